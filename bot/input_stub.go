package bot

// InputErrorText is replaced by the parser's typed errors (branch h-config).
func InputErrorText(err error) string { return err.Error() }
