// Command kuberesolver-client is Go's sercand/kuberesolver v6, unchanged, in a
// tiny gRPC client for the benches: it resolves a kubernetes:/// target through
// the API server and calls /demo.Greeter/SayHello in a loop, with metadata
// x-client=<id> so the benchmark's servers know who called.
//
// With -server, the K8sClient given to kuberesolver.NewBuilder reads the API
// server URL, its CA and a bearer token file from flags (bench/direct_latency.py,
// the test control plane on 127.0.0.1); without it, the library's own in-cluster
// client (the Pod's ServiceAccount; bench/node_rollout.py, in its image).
//
// -rate N starts N calls per second without waiting for their ends (else one
// call at a time, -interval apart); -log prints one JSON line per call, as the
// Python test client does: {"t": unix s, "ok": bool, "pod": the reply or null}.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sercand/kuberesolver/v6"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

type apiClient struct {
	host      string
	tokenFile string
	http      *http.Client
}

func (c *apiClient) GetRequest(url string) (*http.Request, error) {
	if !strings.HasPrefix(url, c.host) {
		url = c.host + "/" + strings.TrimPrefix(url, "/")
	}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, err
	}
	token, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	return req, nil
}

func (c *apiClient) Do(req *http.Request) (*http.Response, error) { return c.http.Do(req) }
func (c *apiClient) Host() string                                 { return c.host }

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

func main() {
	server := flag.String("server", "", "API server URL (https://127.0.0.1:PORT)")
	caFile := flag.String("ca", "", "API server CA certificate (PEM)")
	tokenFile := flag.String("token-file", "", "bearer token file")
	target := flag.String("target", "", "kubernetes:///service.namespace:port")
	id := flag.String("id", "go_kuberesolver", "x-client metadata value")
	interval := flag.Duration("interval", time.Millisecond, "pause between calls")
	rate := flag.Float64("rate", 0, "calls per second, each in its own goroutine (0: -interval)")
	timeout := flag.Duration("timeout", time.Second, "each call's deadline")
	logCalls := flag.Bool("log", false, "print one JSON line per call")
	flag.Parse()

	var client kuberesolver.K8sClient
	if *server == "" {
		inCluster, err := kuberesolver.NewInClusterK8sClient()
		if err != nil {
			log.Fatal(err)
		}
		client = inCluster
	} else {
		ca, err := os.ReadFile(*caFile)
		if err != nil {
			log.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		client = &apiClient{
			host:      strings.TrimSuffix(*server, "/"),
			tokenFile: *tokenFile,
			http:      &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
		}
	}
	conn, err := grpc.NewClient(*target,
		grpc.WithResolvers(kuberesolver.NewBuilder(client, "kubernetes")),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Println("ready")
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-client", *id)
	call := func() {
		in, out := []byte{}, []byte{}
		callCtx, cancel := context.WithTimeout(ctx, *timeout)
		err := conn.Invoke(callCtx, "/demo.Greeter/SayHello", &in, &out, grpc.ForceCodec(rawCodec{}))
		cancel()
		if *logCalls {
			printCall(err, out)
		}
	}
	if *rate <= 0 {
		for {
			call()
			time.Sleep(*interval)
		}
	}
	start := time.Now()
	for sent := 0; ; sent++ {
		go call()
		time.Sleep(time.Until(start.Add(time.Duration(float64(sent+1) / *rate * float64(time.Second)))))
	}
}

type callLine struct {
	T     float64 `json:"t"`
	OK    bool    `json:"ok"`
	Pod   *string `json:"pod"`
	Error string  `json:"error,omitempty"`
}

// printCall writes one call's line; a single Write per line, so lines never interleave.
func printCall(err error, reply []byte) {
	line := callLine{T: float64(time.Now().UnixMilli()) / 1000, OK: err == nil}
	if err == nil {
		pod := string(reply)
		line.Pod = &pod
	} else {
		line.Error = err.Error()
	}
	data, _ := json.Marshal(line)
	os.Stdout.Write(append(data, '\n'))
}
