package gpuagent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	podresources "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// workload is who holds one GPU, as the kubelet says.
type workload struct{ namespace, pod, container string }

// kubelet reads the kubelet's pod-resources socket
// (/var/lib/kubelet/pod-resources/kubelet.sock): which pod and container
// each NVIDIA device (by UUID, "GPU-…" or "MIG-…") is allocated to. It is
// how GPUs are attributed on a node without dcgm-exporter's pod labels.
type kubelet struct {
	conn   *grpc.ClientConn
	client podresources.PodResourcesListerClient
}

func dialKubelet(socket string) (*kubelet, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("kubelet pod-resources %s: %w", socket, err)
	}
	return &kubelet{conn: conn, client: podresources.NewPodResourcesListerClient(conn)}, nil
}

// owners maps device ids of NVIDIA resources to their workloads.
func (k *kubelet) owners(ctx context.Context) (map[string]workload, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := k.client.List(ctx, &podresources.ListPodResourcesRequest{})
	if err != nil {
		return nil, fmt.Errorf("kubelet pod-resources List: %w", err)
	}
	out := map[string]workload{}
	for _, p := range resp.GetPodResources() {
		for _, c := range p.GetContainers() {
			for _, d := range c.GetDevices() {
				if !strings.HasPrefix(d.GetResourceName(), "nvidia.com/") {
					continue
				}
				for _, id := range d.GetDeviceIds() {
					out[id] = workload{namespace: p.GetNamespace(), pod: p.GetName(), container: c.GetName()}
				}
			}
		}
	}
	return out, nil
}

func (k *kubelet) close() { k.conn.Close() }

// attach fills the workload of readings the source left without one.
func attach(rs []Reading, owners map[string]workload) {
	for i := range rs {
		r := &rs[i]
		if r.Namespace != "" || r.Pod != "" {
			continue
		}
		if w, ok := owners[r.UUID]; ok {
			r.Namespace, r.Pod, r.Container = w.namespace, w.pod, w.container
		}
	}
}
