package hbrtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// ---- UpgradeBackupClients ----

type instanceStatus struct {
	ValidInstance bool
	InstanceId    string
	ErrorCode     string
}

type upgradeResponse struct {
	envelope
	TaskId           string
	InstanceStatuses []instanceStatus
}

// precheckLocked is the pre-check result of an instance ID ("" = valid).
func (s *Server) precheckLocked(instanceID string) string {
	if inst, ok := s.instances[instanceID]; ok {
		return inst.Invalid
	}
	return s.unknownInvalid
}

// resolveClientLocked maps a client ID to its instance and pre-check result.
// An unregistered c-X is taken to belong to i-X.
func (s *Server) resolveClientLocked(clientID string) (instanceID, invalid string) {
	if id, ok := s.byClient[clientID]; ok {
		return id, s.instances[id].Invalid
	}
	return "i-" + strings.TrimPrefix(clientID, "c-"), s.unknownInvalid
}

func (s *Server) clientIDLocked(instanceID string) string {
	if inst, ok := s.instances[instanceID]; ok {
		return inst.ClientID
	}
	return "c-" + strings.TrimPrefix(instanceID, "i-")
}

func (s *Server) upgradeBackupClientsLocked(req *request) reply {
	fail := func(e *apiError) reply { return s.errorReply(req, e) }

	instIDs, hasInst, e := idsParam(req, "InstanceIds")
	if e != nil {
		return fail(e)
	}
	clientIDs, hasClient, e := idsParam(req, "ClientIds")
	if e != nil {
		return fail(e)
	}
	if !hasInst && !hasClient {
		return fail(missingParam("InstanceIds"))
	}
	if n := len(instIDs) + len(clientIDs); n > MaxIDsPerUpgrade {
		return fail(businessErr(http.StatusBadRequest, CodeTooManyIDs,
			fmt.Sprintf("The total number of InstanceIds and ClientIds must not exceed %d, got %d.", MaxIDsPerUpgrade, n)))
	}
	if e := checkCrossAccount(req); e != nil {
		return fail(e)
	}

	// HBR reports per-instance pre-check errors in InstanceStatuses only when
	// more than one InstanceId is given (DOC-UPG); a single bad ID fails the
	// whole call. The fake treats a lone ClientId the same way.
	if len(instIDs) == 1 {
		if code := s.precheckLocked(instIDs[0]); code != "" {
			return fail(businessErr(http.StatusBadRequest, code, defaultMessage(code)))
		}
	}
	if len(instIDs) == 0 && len(clientIDs) == 1 {
		if _, code := s.resolveClientLocked(clientIDs[0]); code != "" {
			return fail(businessErr(http.StatusBadRequest, code, defaultMessage(code)))
		}
	}

	statuses := []instanceStatus{}
	var targets []Target
	seen := map[string]bool{}
	add := func(instanceID, clientID string) {
		if !seen[instanceID] {
			seen[instanceID] = true
			targets = append(targets, Target{InstanceID: instanceID, ClientID: clientID})
		}
	}
	for _, id := range instIDs {
		code := s.precheckLocked(id)
		statuses = append(statuses, instanceStatus{ValidInstance: code == "", InstanceId: id, ErrorCode: code})
		if code == "" {
			add(id, s.clientIDLocked(id))
		}
	}
	// ClientIds are not reported in InstanceStatuses (the documented field
	// is per instance); invalid ones are silently left out of the job.
	for _, cid := range clientIDs {
		if iid, code := s.resolveClientLocked(cid); code == "" {
			add(iid, cid)
		}
	}

	s.registerTargetsLocked(targets)
	j := s.createJobLocked(ActionUpgradeBackupClients, req, instIDs, clientIDs, targets)
	return reply{status: http.StatusOK, body: upgradeResponse{
		envelope:         okEnvelope(req.requestID),
		TaskId:           j.TaskID,
		InstanceStatuses: statuses,
	}}
}

// registerTargetsLocked registers, with the defaults, every target of a
// new upgrade job the registry does not know yet.
func (s *Server) registerTargetsLocked(targets []Target) {
	for _, t := range targets {
		if _, ok := s.instances[t.InstanceID]; !ok {
			s.setInstanceLocked(t.InstanceID, Instance{ClientID: t.ClientID, Name: "ecs-" + strings.TrimPrefix(t.InstanceID, "i-"),
				Version: DefaultVersion, MaxVersion: DefaultMaxVersion, Status: StatusActivated, OsType: "linux"})
		}
	}
}

func checkCrossAccount(req *request) *apiError {
	typ, _ := req.get("CrossAccountType")
	uid, e := intParam(req, "CrossAccountUserId", 0)
	if e != nil {
		return e
	}
	role, _ := req.get("CrossAccountRoleName")
	switch typ {
	case "", "SELF_ACCOUNT":
	case "CROSS_ACCOUNT":
		if uid == 0 {
			return missingParam("CrossAccountUserId")
		}
		if role == "" {
			return missingParam("CrossAccountRoleName")
		}
	default:
		return invalidParam("CrossAccountType", "Valid values: SELF_ACCOUNT, CROSS_ACCOUNT.")
	}
	return nil
}

// createJobLocked creates a job following the next queued script (or the
// default one) and wakes WaitJobs.
func (s *Server) createJobLocked(action string, req *request, instIDs, clientIDs []string, targets []Target) *job {
	script := s.defaultScript
	if len(s.scripts) > 0 {
		if len(s.scripts[0]) > 0 {
			script = s.scripts[0]
		}
		s.scripts = s.scripts[1:]
	}
	now := s.now()
	j := &job{
		Job: Job{
			TaskID:      s.newTaskIDLocked(),
			Action:      action,
			InstanceIDs: instIDs,
			ClientIDs:   clientIDs,
			Targets:     targets,
			Params:      cloneValues(req.params),
			Script:      append([]Step(nil), script...),
			CreatedAt:   now,
		},
		lastStep:  -1,
		updatedAt: now,
	}
	s.jobs = append(s.jobs, j)
	s.jobByID[j.TaskID] = j
	s.notifyLocked()
	return j
}

// ---- DescribeTask ----

type describeTaskResponse struct {
	envelope
	Name          string
	Progress      int
	Description   string
	Result        string // a JSON document in a string, or "" while running
	CreatedTime   int64
	UpdatedTime   int64
	CompletedTime int64 `json:",omitempty"`
}

// taskResultEntry is one element of the Result array; lower-camel keys as
// read by terraform-provider-alicloud.
type taskResultEntry struct {
	InstanceID   string `json:"instanceId"`
	ClientID     string `json:"clientId"`
	ClientStatus string `json:"clientStatus"`
	ErrorCode    string `json:"errorCode"`
}

func (s *Server) describeTaskLocked(req *request) reply {
	taskID, _ := req.get("TaskId")
	if taskID == "" {
		return s.errorReply(req, missingParam("TaskId"))
	}
	j := s.jobByID[taskID]
	if j == nil {
		return s.errorReply(req, businessErr(http.StatusBadRequest, CodeInvalidTaskIDNotFound,
			"The specified task "+taskID+" does not exist."))
	}

	now := s.now()
	idx := min(j.DescribeCount, len(j.Script)-1)
	j.DescribeCount++
	st := j.Script[idx]
	if j.lastStep >= 0 && idx != j.lastStep {
		j.updatedAt = now
	}
	j.lastStep = idx

	result := ""
	if st.terminal() {
		if j.CompletedAt.IsZero() {
			j.CompletedAt = now
		}
		entries := s.outcomeLocked(j, st)
		if !j.applied {
			s.applyOutcomeLocked(entries)
			j.applied = true
		}
		if !st.EmptyResult {
			b, _ := json.Marshal(s.reportedLocked(entries))
			result = string(b)
		}
	}
	if st.ObjectResult {
		result = "{}"
	}

	body := describeTaskResponse{
		envelope:    okEnvelope(req.requestID),
		Name:        upgradeTaskName,
		Progress:    st.Progress,
		Description: st.Description,
		Result:      result,
		CreatedTime: j.CreatedAt.Unix(),
		UpdatedTime: j.updatedAt.Unix(),
	}
	if !j.CompletedAt.IsZero() {
		body.CompletedTime = j.CompletedAt.Unix()
	}
	return reply{status: http.StatusOK, body: body}
}

// outcomeLocked computes the per-target result of a job in terminal step st.
func (s *Server) outcomeLocked(j *job, st Step) []taskResultEntry {
	def := StatusActivated
	if st.Progress == -1 || st.Description != TaskCompleted {
		def = StatusUpgradeFailed
	}
	entries := make([]taskResultEntry, 0, len(j.Targets))
	for _, t := range j.Targets {
		e := taskResultEntry{InstanceID: t.InstanceID, ClientID: t.ClientID, ClientStatus: def}
		if inst, ok := s.instances[t.InstanceID]; ok {
			if inst.UpgradeStatus != "" {
				e.ClientStatus = inst.UpgradeStatus
			}
			e.ErrorCode = inst.ErrorCode
		}
		entries = append(entries, e)
	}
	return entries
}

// reportedLocked is what Result says: the entries of the targets not
// left out of it (NotInResult).
func (s *Server) reportedLocked(entries []taskResultEntry) []taskResultEntry {
	out := make([]taskResultEntry, 0, len(entries))
	for _, e := range entries {
		if inst, ok := s.instances[e.InstanceID]; ok && inst.NotInResult {
			continue
		}
		out = append(out, e)
	}
	return out
}

// applyOutcomeLocked writes a finished job's effect into the registry, so
// DescribeBackupClients shows the upgraded version (unless StaysOld): by
// default what the Result says, or the instance's EndStatus and EndVersion.
func (s *Server) applyOutcomeLocked(entries []taskResultEntry) {
	for _, e := range entries {
		inst, ok := s.instances[e.InstanceID]
		if !ok {
			continue
		}
		inst.Status = e.ClientStatus
		if inst.EndStatus != "" {
			inst.Status = inst.EndStatus
		}
		switch {
		case inst.EndVersion != "":
			inst.Version = inst.EndVersion
		case inst.Status == StatusActivated && !inst.StaysOld:
			inst.Version = inst.MaxVersion
		}
	}
}

// ---- DescribeBackupClients ----

type clientTag struct {
	Key   string
	Value string
}

type clientSettings struct {
	DataNetworkType        string
	DataProxySetting       string
	MaxCpuCore             string
	MaxWorker              string
	UseHttps               bool
	AlertOnPartialComplete bool
}

type backupClient struct {
	ClientId          string
	InstanceId        string
	InstanceName      string
	ClientType        string
	ClientVersion     string
	MaxClientVersion  string
	Status            string
	BackupStatus      string
	OsType            string
	ArchType          string
	Hostname          string
	PrivateIpV4       string
	ZoneId            string
	Appliance         bool
	LastHeartBeatTime int64
	CreatedTime       int64
	UpdatedTime       int64
	Tags              []clientTag
	Settings          clientSettings
}

type describeBackupClientsResponse struct {
	envelope
	TotalCount int64
	PageNumber int
	PageSize   int
	Clients    []backupClient
}

func (s *Server) describeBackupClientsLocked(req *request) reply {
	fail := func(e *apiError) reply { return s.errorReply(req, e) }

	clientType, _ := req.get("ClientType")
	switch clientType {
	case "":
		return fail(missingParam("ClientType"))
	case "ECS_CLIENT", "CONTAINER_CLIENT", "LOCAL_CLIENT":
	default:
		return fail(invalidParam("ClientType", "Valid values: ECS_CLIENT, CONTAINER_CLIENT, LOCAL_CLIENT."))
	}
	for _, name := range []string{"InstanceIds", "ClientIds"} {
		if _, inQuery := req.query[name]; inQuery {
			return fail(invalidParam(name, "It is a form parameter (in: formData, style: json): send it in the request body."))
		}
	}
	instIDs, hasInst, e := idsParam(req, "InstanceIds")
	if e != nil {
		return fail(e)
	}
	clientIDs, hasClient, e := idsParam(req, "ClientIds")
	if e != nil {
		return fail(e)
	}
	page, e := intParam(req, "PageNumber", 1)
	if e != nil {
		return fail(e)
	}
	if page < 1 {
		return fail(invalidParam("PageNumber", "It must be at least 1."))
	}
	size, e := intParam(req, "PageSize", defaultDescribePage)
	if e != nil {
		return fail(e)
	}
	if size < 1 || size > MaxDescribePageSize {
		return fail(invalidParam("PageSize", fmt.Sprintf("It must be between 1 and %d.", MaxDescribePageSize)))
	}

	wantInst := toSet(instIDs)
	wantClient := toSet(clientIDs)
	var matched []string
	if clientType == "ECS_CLIENT" { // the registry holds ECS clients only
		candidates := s.order
		if hasInst || hasClient {
			// Only the named can match: look those up, in registration
			// order, rather than scan a registry of a million clients.
			candidates = s.namedLocked(instIDs, clientIDs, hasInst)
		}
		for _, id := range candidates {
			inst := s.instances[id]
			if inst.Invalid == InstanceNotExists {
				continue // no instance, no client
			}
			if hasInst && !wantInst[id] || hasClient && !wantClient[inst.ClientID] {
				continue
			}
			matched = append(matched, id)
		}
	}

	now := s.now()
	clients := []backupClient{}
	start := (page - 1) * size
	for i := start; i < start+size && i < int64(len(matched)); i++ {
		id := matched[i]
		inst := s.instances[id]
		clients = append(clients, backupClient{
			ClientId:          inst.ClientID,
			InstanceId:        id,
			InstanceName:      inst.Name,
			ClientType:        "ECS_CLIENT",
			ClientVersion:     inst.Version,
			MaxClientVersion:  inst.MaxVersion,
			Status:            inst.Status,
			BackupStatus:      "UNPROTECTED",
			OsType:            inst.OsType,
			ArchType:          "amd64",
			Hostname:          inst.Name,
			PrivateIpV4:       fmt.Sprintf("172.16.%d.%d", i/250, i%250+1),
			ZoneId:            "cn-hangzhou-h",
			LastHeartBeatTime: now.Unix(),
			CreatedTime:       now.Add(-30 * 24 * time.Hour).Unix(),
			UpdatedTime:       now.Unix(),
			Tags:              []clientTag{},
			Settings:          clientSettings{DataNetworkType: "VPC", MaxCpuCore: "0", MaxWorker: "0"},
		})
	}
	return reply{status: http.StatusOK, body: describeBackupClientsResponse{
		envelope:   okEnvelope(req.requestID),
		TotalCount: int64(len(matched)),
		PageNumber: int(page),
		PageSize:   int(size),
		Clients:    clients,
	}}
}

func toSet(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// namedLocked is the registered instances that instIDs (byInstance) or
// else clientIDs name, once each, in registration order. Caller holds s.mu.
func (s *Server) namedLocked(instIDs, clientIDs []string, byInstance bool) []string {
	var ids []string
	seen := map[string]bool{}
	add := func(id string) {
		if _, ok := s.instances[id]; ok && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if byInstance {
		for _, id := range instIDs {
			add(id)
		}
	} else {
		for _, c := range clientIDs {
			if id, ok := s.byClient[c]; ok {
				add(id)
			}
		}
	}
	slices.SortFunc(ids, func(a, b string) int { return s.rank[a] - s.rank[b] })
	return ids
}
