"""OpenTelemetry for vibesdk: semantic-convention names, lazy instruments, explicit setup."""
