// Command grpc-go-xds is a plain grpc-go client with grpc's own xDS resolver
// (google.golang.org/grpc/xds), for the xDS server tests: no kuberesolver code.
//
// It dials each target given as an argument (xds://<authority>/<name>.<namespace>),
// with the bootstrap that GRPC_XDS_BOOTSTRAP names, prints {"ready": true},
// then answers each stdin line "INDEX N" (make N unary calls on target INDEX
// to /kr.test.Echo/Unary) with one JSON line: the calls per backend name
// (the reply up to its first '|'), and the error that ended the batch early.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/xds" // registers the xds resolver and balancers
)

// rawCodec passes bytes through: the test backends take and return raw bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = append([]byte(nil), data...); return nil }
func (rawCodec) Name() string                       { return "proto" }

type result struct {
	Counts map[string]int `json:"counts"`
	Errors []string       `json:"errors"`
}

func main() {
	var conns []*grpc.ClientConn
	for _, target := range os.Args[1:] {
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fmt.Fprintf(os.Stderr, "dial %s: %v\n", target, err)
			os.Exit(2)
		}
		conns = append(conns, conn)
	}
	out := json.NewEncoder(os.Stdout)
	_ = out.Encode(map[string]bool{"ready": true})
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var index, n int
		if _, err := fmt.Sscanf(in.Text(), "%d %d", &index, &n); err != nil {
			fmt.Fprintf(os.Stderr, "bad line %q: %v\n", in.Text(), err)
			os.Exit(2)
		}
		res := result{Counts: map[string]int{}, Errors: []string{}}
		for i := 0; i < n; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			request, reply := []byte{}, []byte{}
			err := conns[index].Invoke(ctx, "/kr.test.Echo/Unary", &request, &reply,
				grpc.WaitForReady(true), grpc.ForceCodec(rawCodec{}))
			cancel()
			if err != nil {
				res.Errors = append(res.Errors, err.Error())
				break
			}
			res.Counts[strings.SplitN(string(reply), "|", 2)[0]]++
		}
		_ = out.Encode(res)
	}
	for _, conn := range conns {
		_ = conn.Close()
	}
}
