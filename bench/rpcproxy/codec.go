package rpcproxy

import (
	"fmt"

	"google.golang.org/grpc/mem"
)

// frame is one gRPC message kept as the bytes it arrived as.
type frame struct{ data mem.BufferSlice }

// rawCodec passes messages through without decoding them.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("rpcproxy: cannot marshal %T", v)
	}
	return f.data, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("rpcproxy: cannot unmarshal into %T", v)
	}
	// The transport reuses data's buffers after Unmarshal returns: keep a
	// reference so they stay valid until the frame is sent on.
	data.Ref()
	f.data = data
	return nil
}
