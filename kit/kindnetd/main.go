// Command kindnetd is the offline kit's stand-in for kind's CNI daemon: it runs in the image tag
// that kind's default CNI manifest names, so kind deploys it unchanged.
//
// Per node it writes the CNI config (ptp + host-local over the node's PodCIDRs, portmap), keeps a
// route to every other node's PodCIDRs, masquerades pod traffic leaving the pod network, and
// enforces NetworkPolicy with the kube-network-policies library, as upstream kindnetd does.
//
// The library steers packets to its nfqueue with an nftables `queue` rule; kernels built without
// nft_queue (these hosts) reject that rule, so kindnetd also installs the equivalent iptables
// NFQUEUE rule (xt_NFQUEUE), which the library's queue listener serves all the same.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/kube-network-policies/pkg/networkpolicy"
)

const (
	cniConfigPath = "/etc/cni/net.d/10-kindnet.conflist"
	resyncPeriod  = 10 * time.Second
	policyQueue   = 100
	policyChain   = "KINDNET-NETPOL"
)

func main() {
	klog.InitFlags(nil)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx); err != nil {
		klog.Fatalf("kindnetd: %v", err)
	}
}

func run(ctx context.Context) error {
	nodeName, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("cannot read the node name from the hostname: %w", err)
	}
	if override := os.Getenv("NODE_NAME"); override != "" {
		nodeName = override
	}
	config, err := rest.InClusterConfig()
	if err != nil {
		return fmt.Errorf("not running in a cluster: %w", err)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	nodes := factory.Core().V1().Nodes()
	nodeLister := nodes.Lister()

	policies, err := networkpolicy.NewController(
		client,
		factory.Networking().V1().NetworkPolicies(),
		factory.Core().V1().Namespaces(),
		factory.Core().V1().Pods(),
		nil, nil, nil, nil,
		networkpolicy.Config{
			NodeName:            nodeName,
			QueueID:             policyQueue,
			NetfilterBug1766Fix: true,
			// Keep NRI enabled even though containerd 1.6 has none: kube-network-policies v0.8.0
			// dereferences its NRI plugin for every packet from an IP that is not a known pod
			// (NodePort clients, DNS upstreams) and panics when the plugin was disabled. Enabled,
			// the plugin just fails to connect and answers "unknown pod" from an empty map.
			NRIdisabled: false,
		},
	)
	if err != nil {
		return fmt.Errorf("cannot start the network policy controller: %w", err)
	}
	_ = nodes.Informer()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	go func() {
		if err := policies.Run(ctx); err != nil {
			klog.Errorf("network policy controller stopped: %v", err)
			os.Exit(1)
		}
	}()

	ticker := time.NewTicker(resyncPeriod)
	defer ticker.Stop()
	for {
		all, err := nodeLister.List(labels.Everything())
		if err != nil {
			klog.Errorf("listing nodes: %v", err)
		} else if err := reconcile(nodeName, all); err != nil {
			klog.Errorf("reconcile: %v", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// reconcile converges the node's CNI config, routes and masquerade rules; every step is idempotent.
func reconcile(nodeName string, nodes []*v1.Node) error {
	var self *v1.Node
	var podNetwork []string
	for _, node := range nodes {
		podNetwork = append(podNetwork, podCIDRs(node)...)
		if node.Name == nodeName {
			self = node
		}
	}
	if self == nil {
		return fmt.Errorf("node %q is not registered yet", nodeName)
	}
	own := podCIDRs(self)
	if len(own) == 0 {
		return fmt.Errorf("node %q has no PodCIDR yet", nodeName)
	}
	if err := writeCNIConfig(own); err != nil {
		return err
	}
	for _, node := range nodes {
		if node.Name != nodeName {
			if err := routeTo(node); err != nil {
				return err
			}
		}
	}
	if subnet := os.Getenv("POD_SUBNET"); subnet != "" {
		podNetwork = strings.Split(subnet, ",")
	}
	if err := masquerade(podNetwork); err != nil {
		return err
	}
	return steerToPolicyQueue(podNetwork)
}

func podCIDRs(node *v1.Node) []string {
	if len(node.Spec.PodCIDRs) > 0 {
		return node.Spec.PodCIDRs
	}
	if node.Spec.PodCIDR != "" {
		return []string{node.Spec.PodCIDR}
	}
	return nil
}

func writeCNIConfig(cidrs []string) error {
	var ranges [][]map[string]string
	var routes []map[string]string
	for _, cidr := range cidrs {
		ranges = append(ranges, []map[string]string{{"subnet": cidr}})
		if strings.Contains(cidr, ":") {
			routes = append(routes, map[string]string{"dst": "::/0"})
		} else {
			routes = append(routes, map[string]string{"dst": "0.0.0.0/0"})
		}
	}
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "kindnet",
		"plugins": []any{
			map[string]any{
				"type":   "ptp",
				"ipMasq": false,
				"mtu":    mtu(),
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": "/run/cni-ipam-state",
					"ranges":  ranges,
					"routes":  routes,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if current, err := os.ReadFile(cniConfigPath); err == nil && string(current) == string(data) {
		return nil
	}
	// Write then rename, so the kubelet never reads half a file.
	tmp := filepath.Join(filepath.Dir(cniConfigPath), ".10-kindnet.conflist.tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	klog.Infof("writing CNI config for %v", cidrs)
	return os.Rename(tmp, cniConfigPath)
}

// mtu follows the node's default-route interface so pod packets fit through docker's bridge.
func mtu() int {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err == nil {
		for _, route := range routes {
			if route.Dst == nil || route.Dst.String() == "0.0.0.0/0" {
				if link, err := netlink.LinkByIndex(route.LinkIndex); err == nil {
					return link.Attrs().MTU
				}
			}
		}
	}
	return 1500
}

func routeTo(node *v1.Node) error {
	var gateway net.IP
	for _, address := range node.Status.Addresses {
		if address.Type == v1.NodeInternalIP {
			if ip := net.ParseIP(address.Address); ip != nil && ip.To4() != nil {
				gateway = ip
				break
			}
		}
	}
	if gateway == nil {
		return nil
	}
	for _, cidr := range podCIDRs(node) {
		_, dst, err := net.ParseCIDR(cidr)
		if err != nil || dst.IP.To4() == nil {
			continue
		}
		if err := netlink.RouteReplace(&netlink.Route{Dst: dst, Gw: gateway}); err != nil {
			return fmt.Errorf("route %s via %s: %w", dst, gateway, err)
		}
	}
	return nil
}

// masquerade adds, once, a rule that hides pod addresses behind the node's for traffic that leaves
// the pod network (the docker host and beyond cannot route replies to pod IPs).
func masquerade(podNetwork []string) error {
	for _, cidr := range podNetwork {
		if strings.Contains(cidr, ":") {
			continue
		}
		rule := []string{"-s", cidr, "!", "-d", cidr,
			"-m", "comment", "--comment", "kindnet masquerade", "-j", "MASQUERADE"}
		if err := ensureRule("nat", "POSTROUTING", rule); err != nil {
			return err
		}
	}
	return nil
}

// steerToPolicyQueue sends the first packet of every new connection to or from a pod to the
// network policy queue, whose verdict then holds for the whole connection (conntrack). Packets
// from the node itself (kubelet probes) are exempt, as Kubernetes requires. While no listener is
// bound (kindnetd restarting) the queue is bypassed rather than blackholing the cluster.
func steerToPolicyQueue(podNetwork []string) error {
	if err := iptables("-t", "mangle", "-N", policyChain); err != nil && !strings.Contains(err.Error(), "exists") {
		return err
	}
	rules := [][]string{
		{"-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"},
		{"-m", "addrtype", "--src-type", "LOCAL", "-j", "RETURN"},
	}
	for _, cidr := range podNetwork {
		if strings.Contains(cidr, ":") {
			continue
		}
		for _, direction := range []string{"-s", "-d"} {
			rules = append(rules, []string{"-m", "conntrack", "--ctstate", "NEW", direction, cidr,
				"-j", "NFQUEUE", "--queue-num", fmt.Sprint(policyQueue), "--queue-bypass"})
		}
	}
	for _, rule := range rules {
		if err := ensureRule("mangle", policyChain, rule); err != nil {
			return err
		}
	}
	return ensureRule("mangle", "POSTROUTING", []string{"-j", policyChain})
}

func ensureRule(table, chain string, rule []string) error {
	if iptables(append([]string{"-t", table, "-C", chain}, rule...)...) == nil {
		return nil
	}
	return iptables(append([]string{"-t", table, "-A", chain}, rule...)...)
}

func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w", "5"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %v: %v: %s", args, err, out)
	}
	return nil
}
