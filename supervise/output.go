package supervise

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
)

// maxLine is the longest line logged as one record; longer lines are split.
const maxLine = 64 << 10

// logLines logs every line read from r at level Info with the attribute stream=stream
// (log already carries worker=Name). Empty lines are dropped.
func logLines(r io.Reader, log *slog.Logger, stream string) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if line = bytes.TrimRight(line, "\r\n"); len(line) > 0 {
			log.LogAttrs(context.Background(), slog.LevelInfo, string(line), slog.String("stream", stream))
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}
