// The two programs of the test node's images: the pod sandbox's pause and a tiny HTTP server.
module kuberesolver.local/testenv/node-images

go 1.25.0
