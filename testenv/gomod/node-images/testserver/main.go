// Command testserver is the test node's workload: a static HTTP server that
// answers /healthz (for readiness probes), /name (the pod's hostname) and
// /files/... (the files under FILES_DIR, e.g. a mounted ConfigMap). It exits
// 0 on SIGTERM.
package main

import (
	"context"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func env(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func main() {
	hostname, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/name", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(hostname))
	})
	mux.Handle("/files/", http.StripPrefix("/files/", http.FileServer(http.Dir(env("FILES_DIR", "/config")))))
	server := &http.Server{Addr: ":" + env("PORT", "8080"), Handler: mux}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		server.Shutdown(context.Background())
	}()
	log.Printf("testserver %s listening on %s", hostname, server.Addr)
	if err := server.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
