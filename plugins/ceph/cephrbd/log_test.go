package cephrbd

import (
	"io"
	"log/slog"
)

func sdkLoggerTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
