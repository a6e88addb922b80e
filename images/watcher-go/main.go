// Command k8s-lab-watcher-go is the lab's pod watcher built on client-go's SharedInformer. It
// prints the same JSON lines as the Python watcher (images/watcher/k8s_lab_watcher.py, whose
// docstring is the format's reference), so `lab events` and lab.watch read either.
//
// The informer does what the Python watcher writes by hand: it lists, watches from the list's
// resourceVersion with bookmarks, re-lists after 410 Gone, backs off after errors (0.8 s doubling
// to 30 s) and keeps a cache of the Pods it has seen. The watcher adds only the lines:
//
//   - event handlers turn the informer's notifications into ADDED / MODIFIED / DELETED lines;
//   - a ListerWatcher wrapper sees every list and watch the informer makes, so the Pods of the
//     first list are printed as SNAPSHOT and those a later re-list changed as RESYNC (with
//     `change`), and WATCHER status lines report lists, expiries and errors;
//   - the informer's periodic resync re-delivers unchanged Pods: they are counted, not printed.
//
// Configuration is the Python watcher's (flags override the environment): NODE_NAME,
// WATCH_NAMESPACE ("*" for all), POD_NAME, WATCH_TIMEOUT_SECONDS, WATCHER_TEST_STALE_RESOURCE_VERSION,
// WATCHER_TEST_RELIST_DELAY_SECONDS; plus WATCH_RESYNC_SECONDS (the informer's resync period) and
// WATCHER_HEALTH_PORT (the /healthz endpoint of the liveness probe; 0 turns it off).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	statusType      = "WATCHER"
	allNamespaces   = "*"
	saNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
	defaultTimeoutS = 300
	defaultResyncS  = 600
	defaultHealth   = 8081
)

type options struct {
	namespace, node, podName, kubeContext string
	timeout, resync, relistDelay          time.Duration
	staleRV                               string
	healthPort                            int
}

// --------------------------------------------------------------------------------- the lines

// podLine is one Pod line; the field order is the Python watcher's key order.
type podLine struct {
	Time            string      `json:"time"`
	Type            string      `json:"type"`
	Change          *string     `json:"change"`
	Namespace       *string     `json:"namespace"`
	Pod             *string     `json:"pod"`
	UID             *string     `json:"uid"`
	Phase           *string     `json:"phase"`
	Node            *string     `json:"node"`
	PodIP           *string     `json:"pod_ip"`
	Conditions      []condition `json:"conditions"`
	ResourceVersion *string     `json:"resource_version"`
	Created         *string     `json:"created"`
	Deleting        *string     `json:"deleting"`
	WatcherNode     *string     `json:"watcher_node"`
	Watcher         *string     `json:"watcher"`
	Session         string      `json:"session"`
}

type condition struct {
	Type               string  `json:"type"`
	Status             string  `json:"status"`
	LastTransitionTime *string `json:"last_transition_time"`
}

// field is one key of a status line; status lines keep their keys in the order given.
type field struct {
	key   string
	value any
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func timestamp(t *metav1.Time) *string {
	if t == nil || t.IsZero() {
		return nil
	}
	return optional(t.UTC().Format(time.RFC3339))
}

func now() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000Z") }

type emitter struct {
	mu          sync.Mutex
	out         io.Writer
	node, pod   *string
	session     string
	counts      map[string]int
	lastLinesAt time.Time
}

func newEmitter(out io.Writer, node, pod string) *emitter {
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	return &emitter{out: out, node: optional(node), pod: optional(pod), session: hex.EncodeToString(id),
		counts: map[string]int{}}
}

// encode is json.Marshal without HTML escaping (details carry quotes and angle brackets).
func encode(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return []byte(strconv.Quote(err.Error()))
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

func (e *emitter) write(line []byte) {
	_, _ = e.out.Write(append(line, '\n'))
}

func (e *emitter) emitPod(kind, change string, pod *corev1.Pod, rv string) {
	line := podLine{Time: now(), Type: kind, Change: optional(change),
		Namespace: optional(pod.Namespace), Pod: optional(pod.Name), UID: optional(string(pod.UID)),
		Phase: optional(string(pod.Status.Phase)), Node: optional(pod.Spec.NodeName), PodIP: optional(pod.Status.PodIP),
		Conditions: make([]condition, 0, len(pod.Status.Conditions)), ResourceVersion: optional(rv),
		Created: timestamp(&pod.CreationTimestamp), Deleting: timestamp(pod.DeletionTimestamp),
		WatcherNode: e.node, Watcher: e.pod, Session: e.session}
	for _, c := range pod.Status.Conditions {
		line.Conditions = append(line.Conditions, condition{string(c.Type), string(c.Status), timestamp(&c.LastTransitionTime)})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.write(encode(line))
	e.counts[kind]++
}

func (e *emitter) status(status string, fields ...field) {
	all := append([]field{{"time", now()}, {"type", statusType}, {"status", status}}, fields...)
	all = append(all, field{"watcher_node", e.node}, field{"watcher", e.pod}, field{"session", e.session})
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, f := range all {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(encode(f.key))
		buf.WriteByte(':')
		buf.Write(encode(f.value))
	}
	buf.WriteByte('}')
	e.mu.Lock()
	defer e.mu.Unlock()
	e.write(buf.Bytes())
}

func (e *emitter) count(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counts[key]++
}

// ------------------------------------------------------------------------- lists and watches

// listing is a list the informer made whose Pods the handlers have not all delivered yet.
type listing struct {
	initial bool
	rv      string
	pods    int
	pending map[types.UID]string // uid -> the resourceVersion listed
	changes int
}

// tracker sits between the informer and the API (as its ListerWatcher) and behind it (as its
// event handler); it knows which notifications come from which list.
type tracker struct {
	inner cache.ListerWatcherWithContext
	opts  options
	emit  *emitter

	mu         sync.Mutex
	lists      int
	page       *listing // a paged list being collected
	current    *listing // the last complete list, until its Pods are delivered
	lastListRV string
	watches    int // since the last list
	expired    bool
}

func (t *tracker) List(o metav1.ListOptions) (runtime.Object, error) {
	return t.ListWithContext(context.Background(), o)
}

func (t *tracker) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return t.WatchWithContext(context.Background(), o)
}

func (t *tracker) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	t.mu.Lock()
	delay := t.expired && t.opts.relistDelay > 0 && o.Continue == ""
	t.expired = false
	t.mu.Unlock()
	if delay { // testing only: let changes pile up so that the re-list finds them
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(t.opts.relistDelay):
		}
	}
	obj, err := t.inner.ListWithContext(ctx, o)
	if err != nil {
		t.failed("list", err)
		return nil, err
	}
	list, ok := obj.(*corev1.PodList)
	if !ok {
		return obj, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if o.Continue == "" || t.page == nil {
		t.page = &listing{initial: t.lists == 0, rv: list.ResourceVersion, pending: map[types.UID]string{}}
	}
	for i := range list.Items {
		t.page.pending[list.Items[i].UID] = list.Items[i].ResourceVersion
	}
	if list.Continue != "" {
		return obj, nil
	}
	done := t.page
	t.page, t.lists, t.watches, t.lastListRV = nil, t.lists+1, 0, done.rv
	done.pods = len(done.pending)
	t.current = done
	if done.pods == 0 {
		t.finish()
	}
	return obj, nil
}

func (t *tracker) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	t.mu.Lock()
	if t.opts.staleRV != "" && t.watches > 0 {
		o.ResourceVersion = t.opts.staleRV // testing only: forces 410 Gone and a re-list
	}
	t.watches++
	t.mu.Unlock()
	if t.opts.timeout > 0 {
		seconds := int64(t.opts.timeout / time.Second)
		o.TimeoutSeconds = &seconds
	}
	t.emit.count("watches")
	w, err := t.inner.WatchWithContext(ctx, o)
	if err != nil {
		t.failed("watch", err)
		return nil, err
	}
	return watch.Filter(w, func(event watch.Event) (watch.Event, bool) {
		if event.Type == watch.Error {
			t.failed("watch", apierrors.FromObject(event.Object))
		}
		return event, true
	}), nil
}

func isExpired(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// failed reports an error of a list or watch; the informer retries it with its own backoff.
func (t *tracker) failed(what string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if isExpired(err) {
		t.mu.Lock()
		t.expired = true
		t.mu.Unlock()
		t.emit.count("expired")
		t.emit.status("expired", field{"detail", fmt.Sprintf("%s: %v", what, err)},
			field{"resource_version", optional(t.lastRV())})
		return
	}
	t.emit.count("errors")
	fields := []field{{"detail", fmt.Sprintf("%s pods: %v", what, err)}, {"retry_in_s", nil}}
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		fields = append(fields, field{"hint", "the watcher's ServiceAccount needs get, list and watch on pods " +
			"(Role and RoleBinding watcher-pod-reader); the watcher retries with backoff (0.8 s doubling to 30 s)"})
	}
	t.emit.status("error", fields...)
}

func (t *tracker) lastRV() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastListRV
}

// finish ends the current list with its status line (the caller holds t.mu).
func (t *tracker) finish() {
	done := t.current
	t.current = nil
	if done.initial {
		t.emit.status("snapshot", field{"pods", done.pods}, field{"resource_version", done.rv})
		return
	}
	t.emit.status("relisted", field{"pods", done.pods}, field{"changes", done.changes},
		field{"resource_version", done.rv})
}

// ------------------------------------------------------------------------------- the handlers

func (t *tracker) OnAdd(obj any, _ bool) {
	if pod, ok := obj.(*corev1.Pod); ok {
		t.observe(nil, pod)
	}
}

func (t *tracker) OnUpdate(oldObj, newObj any) {
	old, _ := oldObj.(*corev1.Pod)
	if pod, ok := newObj.(*corev1.Pod); ok {
		t.observe(old, pod)
	}
}

func (t *tracker) OnDelete(obj any) {
	switch o := obj.(type) {
	case *corev1.Pod:
		t.emit.emitPod("DELETED", "", o, o.ResourceVersion)
	case cache.DeletedFinalStateUnknown: // a re-list no longer has it: deleted while not watching
		pod, ok := o.Obj.(*corev1.Pod)
		if !ok {
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.current != nil {
			t.current.changes++
		}
		t.emit.emitPod("RESYNC", "DELETED", pod, t.lastListRV)
	}
}

// observe prints an added or updated Pod: SNAPSHOT / RESYNC when it comes from a list, ADDED /
// MODIFIED from a watch, nothing when its resourceVersion did not change (a periodic resync, or
// a re-list of a Pod that did not change).
func (t *tracker) observe(old, pod *corev1.Pod) {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.current
	fromList := false
	if list != nil {
		if rv, ok := list.pending[pod.UID]; ok && rv == pod.ResourceVersion {
			delete(list.pending, pod.UID)
			fromList = true
		}
	}
	unchanged := old != nil && old.ResourceVersion == pod.ResourceVersion
	switch {
	case unchanged && !fromList:
		t.emit.count("resyncs")
	case unchanged:
	case fromList && list.initial:
		t.emit.emitPod("SNAPSHOT", "", pod, pod.ResourceVersion)
	case fromList:
		change := "MODIFIED"
		if old == nil {
			change = "ADDED"
		}
		list.changes++
		t.emit.emitPod("RESYNC", change, pod, pod.ResourceVersion)
	case old == nil:
		t.emit.emitPod("ADDED", "", pod, pod.ResourceVersion)
	default:
		t.emit.emitPod("MODIFIED", "", pod, pod.ResourceVersion)
	}
	if fromList && len(list.pending) == 0 {
		t.finish()
	}
}

// ------------------------------------------------------------------------------------ running

// newInformer is a SharedIndexInformer over Pods that lists and watches through a tracker and
// notifies it.
func newInformer(lw cache.ListerWatcherWithContext, o options, e *emitter) (cache.SharedIndexInformer, error) {
	t := &tracker{inner: lw, opts: o, emit: e}
	informer := cache.NewSharedIndexInformer(t, &corev1.Pod{}, o.resync, cache.Indexers{})
	// The tracker has reported the error already; the default handler would log it again.
	if err := informer.SetWatchErrorHandlerWithContext(func(context.Context, *cache.Reflector, error) {}); err != nil {
		return nil, err
	}
	_, err := informer.AddEventHandler(t)
	return informer, err
}

func envOr(name, fallback string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return fallback
}

func seconds(name string, fallback float64) time.Duration {
	v, err := strconv.ParseFloat(envOr(name, ""), 64)
	if err != nil {
		v = fallback
	}
	return time.Duration(v * float64(time.Second))
}

func defaultNamespace() string {
	if ns := envOr("WATCH_NAMESPACE", ""); ns != "" {
		return ns
	}
	if data, err := os.ReadFile(saNamespaceFile); err == nil && strings.TrimSpace(string(data)) != "" {
		return strings.TrimSpace(string(data))
	}
	return "default"
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("k8s-lab-watcher-go", flag.ContinueOnError)
	fs.StringVar(&o.namespace, "namespace", "", `namespace to watch, "*" for all (default: $WATCH_NAMESPACE, else the ServiceAccount's)`)
	all := fs.Bool("all-namespaces", false, `same as --namespace "*"`)
	fs.StringVar(&o.node, "node", envOr("NODE_NAME", ""), "only Pods on this node ($NODE_NAME)")
	fs.StringVar(&o.podName, "pod-name", envOr("POD_NAME", ""), "this watcher's Pod ($POD_NAME)")
	fs.DurationVar(&o.timeout, "timeout", seconds("WATCH_TIMEOUT_SECONDS", defaultTimeoutS), "server-side timeout of one watch")
	fs.DurationVar(&o.resync, "resync", seconds("WATCH_RESYNC_SECONDS", defaultResyncS), "the informer's resync period (0: none)")
	fs.StringVar(&o.staleRV, "test-stale-resource-version", envOr("WATCHER_TEST_STALE_RESOURCE_VERSION", ""),
		"testing: resume watches from this old resourceVersion (forces 410)")
	fs.DurationVar(&o.relistDelay, "test-relist-delay", seconds("WATCHER_TEST_RELIST_DELAY_SECONDS", 0),
		"testing: wait this long after a 410 before re-listing")
	health, _ := strconv.Atoi(envOr("WATCHER_HEALTH_PORT", strconv.Itoa(defaultHealth)))
	fs.IntVar(&o.healthPort, "health-port", health, "port of /healthz (0: none)")
	fs.StringVar(&o.kubeContext, "context", envOr("KUBE_CONTEXT", ""), "kubeconfig context when not running in a cluster")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if *all {
		o.namespace = allNamespaces
	} else if o.namespace == "" {
		o.namespace = defaultNamespace()
	}
	return o, nil
}

// restConfig is the in-cluster ServiceAccount's, else the kubeconfig's (running on a host).
func restConfig(kubeContext string) (*rest.Config, error) {
	if cfg, err := rest.InClusterConfig(); err == nil {
		return cfg, nil
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(),
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
}

// serveHealth answers /healthz while the informer runs: the liveness probe restarts a watcher
// whose process no longer serves. API errors do not make it unhealthy (the informer retries
// them; a restart would not help).
// podClient is a REST client for the core v1 API that knows Pods only: the generated clientset
// would link every API group into the binary (37 MB instead of about half).
func podClient(cfg *rest.Config) (*rest.RESTClient, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c := rest.CopyConfig(cfg)
	c.APIPath = "/api"
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	c.UserAgent = "k8s-lab-watcher-go"
	return rest.RESTClientFor(c)
}

func serveHealth(port int, informer cache.SharedIndexInformer, e *emitter) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(encode(map[string]any{"status": "ok", "synced": informer.HasSynced(),
			"session": e.session, "pods_known": len(informer.GetStore().ListKeys())}), '\n'))
	})
	server := &http.Server{Addr: net.JoinHostPort("", strconv.Itoa(port)), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.status("error", field{"detail", "health endpoint: " + err.Error()}, field{"retry_in_s", nil})
		}
	}()
	return server
}

func run(args []string, out io.Writer) int {
	o, err := parseOptions(args)
	if err != nil {
		return 2
	}
	e := newEmitter(out, o.node, o.podName)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	reason := "requested"
	go func() {
		sig := <-signals
		reason = map[os.Signal]string{syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT"}[sig]
		stop()
	}()

	e.status("started", field{"scope", o.namespace}, field{"implementation", "go"},
		field{"timeout_s", int(o.timeout / time.Second)}, field{"resync_s", o.resync.Seconds()},
		field{"stale_resource_version", optional(o.staleRV)}, field{"relist_delay_s", nilIfZero(o.relistDelay.Seconds())})
	cfg, err := restConfig(o.kubeContext)
	if err != nil {
		e.status("error", field{"detail", "cannot configure the API client: " + err.Error()})
		return 2
	}
	client, err := podClient(cfg)
	if err != nil {
		e.status("error", field{"detail", "cannot configure the API client: " + err.Error()})
		return 2
	}
	namespace := o.namespace
	if namespace == allNamespaces {
		namespace = metav1.NamespaceAll
	}
	selector := fields.Everything()
	if o.node != "" {
		selector = fields.OneTermEqualSelector("spec.nodeName", o.node)
	}
	lw := cache.NewListWatchFromClient(client, "pods", namespace, selector)
	informer, err := newInformer(cache.ToListerWatcherWithContext(lw), o, e)
	if err != nil {
		e.status("error", field{"detail", "cannot add the event handler: " + err.Error()})
		return 2
	}
	var health *http.Server
	if o.healthPort > 0 {
		health = serveHealth(o.healthPort, informer, e)
	}
	informer.RunWithContext(ctx) // returns after ctx ends and every notification was handled
	if health != nil {
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = health.Shutdown(shutdown)
		cancel()
	}
	fields := []field{{"reason", reason}, {"resource_version", optional(informer.LastSyncResourceVersion())},
		{"pods_known", len(informer.GetStore().ListKeys())}}
	e.mu.Lock()
	for _, key := range []string{"ADDED", "MODIFIED", "DELETED", "SNAPSHOT", "RESYNC", "resyncs", "expired", "errors", "watches"} {
		fields = append(fields, field{key, e.counts[key]})
	}
	e.mu.Unlock()
	e.status("stopped", fields...)
	return 0
}

func nilIfZero(v float64) any {
	if v == 0 {
		return nil
	}
	return v
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout))
}
