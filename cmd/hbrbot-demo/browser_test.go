package main

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium (.ci/run installs it).
const chromiumPath = "/usr/bin/chromium"

var update = flag.Bool("update", false, "TestScreenshots: write the screenshots into docs/images")

// browser starts a headless chromium that reaches nothing but 127.0.0.1,
// or skips the test where there is none (not on CI: there it fails).
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and %s is missing (.ci/run installs it): %v", chromiumPath, err)
		}
		t.Skipf("no %s (apt-get install chromium): the browser test does not run", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("disable-lcd-text", true), // grey anti-aliasing: smaller pictures
		chromedp.Flag("force-device-scale-factor", "1"),
		chromedp.WindowSize(width, height),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return ctx
}

// step runs actions with a bound of its own, naming what it waited for.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if _, err := runIn(t, ctx, what, chromedp.Steps(actions...)); err != nil {
		t.Fatal(err)
	}
}

// runIn runs a, bounded, and says on failure what the page showed.
func runIn[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) (T, error) {
	t.Helper()
	bounded, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(bounded, a)
	if err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		err = fmt.Errorf("%s: %w\npage text:\n%s", what, err, page)
	}
	return v, err
}

// until waits, in the page, for a JavaScript condition to hold.
func until(cond string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(50*time.Millisecond))
}

// threadHas is true once a thread reply's text contains s.
func threadHas(s string) string {
	return fmt.Sprintf(`[...document.querySelectorAll(".thread .msg")].some(m => m.textContent.includes(%q))`, s)
}

// send types a command in the box and sends it.
func send(text string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(chromedp.CSS("#command")),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("command").value = ""`), // the suggestion

		chromedp.SendKeys(chromedp.CSS("#command"), text),
		chromedp.Click(chromedp.CSS("#send")),
	)
}

// actAs switches the acting user.
func actAs(user string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.Click(chromedp.CSS(`.as-btn[data-user="`+user+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.as-btn.on[data-user="`+user+`"]`)),
	)
}

const approveButton = `button[data-action-id="hbr_upgrade_approve"]`

var approve = chromedp.CSS(approveButton)

// TestBrowser drives the page in headless chromium as a person would:
// Alice types the command, Bob approves on the card, the report appears
// in the thread.
func TestBrowser(t *testing.T) {
	ctx := browser(t, 1200, 900)
	d := startDemo(t, time.Second, 200*time.Millisecond)
	start := time.Now()
	step(t, ctx, "open the page", chromedp.Navigate(d.URL), until(`document.querySelector(".empty") && document.querySelector("#command").value.startsWith("/hbr-upgrade ")`))
	step(t, ctx, "send the command as Alice", send(fleetCommand()))
	step(t, ctx, "the card", chromedp.WaitVisible(approve),
		until(`document.querySelector(".msg.eph") && document.querySelector(".msg.eph").textContent.includes("Only visible to you")`))
	step(t, ctx, "switch to Bob", actAs(bob),
		until(`!document.querySelector(".msg.eph")`)) // Alice's ephemeral note is hers
	step(t, ctx, "approve as Bob", chromedp.Click(approve))
	step(t, ctx, "the final report", until(threadHas("completed: 5 upgraded · 1 failed · 1 refused")),
		until(`!document.querySelector('`+approveButton+`')`))
	card, err := runIn(t, ctx, "read the card", chromedp.Text(chromedp.CSS(`#list > .msg:not(.eph)`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(card, "Approved by @bob") {
		t.Errorf("card: %s", card)
	}
	step(t, ctx, "collapse the thread", chromedp.Click(chromedp.CSS(`.replies-toggle`)), until(`!document.querySelector(".thread")`),
		chromedp.Click(chromedp.CSS(`.replies-toggle`)), until(`document.querySelector(".thread")`))
	t.Logf("browser flow: %s", time.Since(start).Round(time.Millisecond))
}

// TestScreenshots takes the README's pictures (docs/images) from the page:
//
//	go test ./cmd/hbrbot-demo -run TestScreenshots -update
//
// Without -update it is skipped: the pictures hold times and task IDs.
func TestScreenshots(t *testing.T) {
	if !*update {
		t.Skip("run with -update to write docs/images")
	}
	ctx := browser(t, 1200, 900)
	d := startDemo(t, 20*time.Second, time.Second) // as `go run` has it: the progress bar moves
	dir := filepath.Join("..", "..", "docs", "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := func(name string, height int) {
		t.Helper()
		step(t, ctx, "viewport for "+name, chromedp.EmulateViewport(1200, int64(height)),
			chromedp.Evaluate[chromedp.Void](`document.getElementById("list").scrollTop = 1e9; document.getElementById("toast").style.display = "none"`))
		buf, err := runIn(t, ctx, "screenshot "+name, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(buf))
		if err != nil {
			t.Fatal(err)
		}
		var small bytes.Buffer
		if err := png.Encode(&small, paletted(img)); err != nil {
			t.Fatal(err)
		}
		buf = small.Bytes()

		if w := img.Bounds().Dx(); w < 1000 || w > 1200 || len(buf) > 200<<10 {
			t.Errorf("%s: %d px wide, %d KB", name, w, len(buf)>>10)
		}
		if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	step(t, ctx, "open the page as Bob", chromedp.Navigate(d.URL+"#as="+bob), until(`document.querySelector(".empty")`))
	step(t, ctx, "Alice asks", actAs(alice), send(fleetCommand()), chromedp.WaitVisible(approve))
	step(t, ctx, "Mallory tries", actAs(mallory), chromedp.Click(approve),
		until(`document.querySelector(".msg.eph") && document.querySelector(".msg.eph").textContent.includes("approve")`))
	step(t, ctx, "Bob looks", actAs(bob), until(`!document.querySelector(".msg.eph")`))
	shot("approval-card.png", 900)
	step(t, ctx, "Bob approves", chromedp.Click(approve),
		until(`/Progress.*[^0-9](2[5-9]|[3-7][0-9])%/.test(document.querySelector(".thread") ? document.querySelector(".thread").textContent : "")`))
	shot("progress.png", 900)
	step(t, ctx, "the report", until(threadHas("completed: 5 upgraded")))
	shot("report.png", 1250)
}

// paletted is img in its 256 most used colours, each other colour shown
// as the nearest of those: a flat page's text loses nothing visible and
// the file a good half of its size.
func paletted(img image.Image) *image.Paletted {
	b := img.Bounds()
	counts := map[color.RGBA]int{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			counts[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	colors := slices.SortedFunc(maps.Keys(counts), func(a, b color.RGBA) int {
		if c := cmp.Compare(counts[b], counts[a]); c != 0 {
			return c
		}
		return cmp.Compare(uint32(a.R)<<24|uint32(a.G)<<16|uint32(a.B)<<8|uint32(a.A), uint32(b.R)<<24|uint32(b.G)<<16|uint32(b.B)<<8|uint32(b.A))
	})
	pal := make(color.Palette, 0, 256)
	for _, c := range colors[:min(256, len(colors))] {
		pal = append(pal, c)
	}
	out := image.NewPaletted(b, pal)
	nearest := map[color.RGBA]uint8{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			i, ok := nearest[c]
			if !ok {
				i = uint8(pal.Index(c))
				nearest[c] = i
			}
			out.SetColorIndex(x, y, i)
		}
	}
	return out
}
