package main

// The informer and the tracker against a scripted ListerWatcher: lists and watches whose events
// the test sends, including a 410 Gone and a Forbidden, so that every kind of line is checked
// without a cluster. The real informer runs (reflector, FIFO, processor), only the API is fake.

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

type scriptedLW struct {
	mu      sync.Mutex
	lists   []any // *corev1.PodList or error, returned in turn; the last one repeats
	listed  int
	watches chan *watch.FakeWatcher
}

func (s *scriptedLW) ListWithContext(context.Context, metav1.ListOptions) (runtime.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.lists[min(s.listed, len(s.lists)-1)]
	s.listed++
	if err, ok := next.(error); ok {
		return nil, err
	}
	return next.(*corev1.PodList).DeepCopy(), nil
}

func (s *scriptedLW) WatchWithContext(context.Context, metav1.ListOptions) (watch.Interface, error) {
	w := watch.NewFake()
	s.watches <- w
	return w, nil
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var record map[string]any
		if err := json.Unmarshal([]byte(line), &record); err != nil {
			panic(line)
		}
		out = append(out, record)
	}
	return out
}

func (b *syncBuffer) raw() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func pod(name, rv string) *corev1.Pod {
	created := metav1.NewTime(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC))
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "lab", UID: types.UID("uid-" + name), ResourceVersion: rv,
			CreationTimestamp: created},
		Spec: corev1.PodSpec{NodeName: "node-a"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.7", Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(created.Add(4 * time.Second))},
		}},
	}
}

func podList(rv string, pods ...*corev1.Pod) *corev1.PodList {
	list := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: rv}}
	for _, p := range pods {
		list.Items = append(list.Items, *p)
	}
	return list
}

func start(t *testing.T, lw *scriptedLW, resync time.Duration) (*syncBuffer, context.CancelFunc, chan struct{}) {
	t.Helper()
	out := &syncBuffer{}
	e := newEmitter(out, "node-a", "watcher-x")
	informer, err := newInformer(lw, options{resync: resync}, e)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { informer.RunWithContext(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return out, cancel, done
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// summary is "TYPE[/change] pod rv" per Pod line and "WATCHER status" per status line.
func summary(lines []map[string]any) []string {
	var out []string
	for _, l := range lines {
		if l["type"] == statusType {
			out = append(out, "WATCHER "+l["status"].(string))
			continue
		}
		kind := l["type"].(string)
		if c, ok := l["change"].(string); ok {
			kind += "/" + c
		}
		out = append(out, kind+" "+l["pod"].(string)+" "+l["resource_version"].(string))
	}
	return out
}

func TestSnapshotWatchAnd410RelistPrintEachTransitionOnce(t *testing.T) {
	lw := &scriptedLW{watches: make(chan *watch.FakeWatcher, 4), lists: []any{
		podList("10", pod("a", "5"), pod("b", "6")),
		// After the 410: a changed, c was deleted and d created while nobody watched.
		podList("20", pod("a", "14"), pod("d", "16")),
	}}
	out, _, _ := start(t, lw, 0)
	w := <-lw.watches
	w.Add(pod("c", "11"))
	w.Modify(pod("a", "12"))
	w.Delete(pod("b", "13"))
	w.Error(&metav1.Status{Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired,
		Message: "too old resource version: 1 (13)"})
	second := <-lw.watches
	eventually(t, "the relisted line", func() bool { return strings.Contains(out.raw(), `"status":"relisted"`) })
	second.Modify(pod("d", "21"))
	eventually(t, "the MODIFIED after the relist", func() bool { return len(out.lines()) == 12 })

	// The expired line comes from the reflector as the error arrives, the Pod lines from the
	// handlers in order: it may precede Pod lines of events received before the error.
	var lines []map[string]any
	var expired map[string]any
	for i, line := range out.lines() {
		if line["status"] == "expired" {
			expired = line
			if got := summary(out.lines()[i+1:]); !strings.Contains(strings.Join(got, ","), "RESYNC") {
				t.Errorf("the expired line follows the re-list's lines")
			}
			continue
		}
		lines = append(lines, line)
	}
	got := summary(lines)
	want := []string{"SNAPSHOT a 5", "SNAPSHOT b 6", "WATCHER snapshot", "ADDED c 11", "MODIFIED a 12", "DELETED b 13",
		"RESYNC/DELETED c 20", "RESYNC/MODIFIED a 14", "RESYNC/ADDED d 16", "WATCHER relisted", "MODIFIED d 21"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if lines[2]["pods"] != 2.0 || lines[2]["resource_version"] != "10" {
		t.Errorf("snapshot status: %v", lines[2])
	}
	if lines[9]["pods"] != 2.0 || lines[9]["changes"] != 3.0 || lines[9]["resource_version"] != "20" {
		t.Errorf("relisted status: %v", lines[9])
	}
	if expired == nil || !strings.Contains(expired["detail"].(string), "too old resource version") {
		t.Errorf("expired status: %v", expired)
	}
}

func TestAPodLineHasThePythonWatchersKeysInOrder(t *testing.T) {
	lw := &scriptedLW{watches: make(chan *watch.FakeWatcher, 4), lists: []any{podList("10", pod("a", "5"))}}
	out, _, _ := start(t, lw, 0)
	<-lw.watches
	eventually(t, "the snapshot", func() bool { return strings.Contains(out.raw(), `"status":"snapshot"`) })
	first := strings.SplitN(out.raw(), "\n", 2)[0]
	// What images/watcher/k8s_lab_watcher.py prints for the same Pod, after its time and session.
	want := `","type":"SNAPSHOT","change":null,"namespace":"lab","pod":"a","uid":"uid-a","phase":"Running",` +
		`"node":"node-a","pod_ip":"10.244.0.7","conditions":[{"type":"Ready","status":"True",` +
		`"last_transition_time":"2024-05-01T12:00:04Z"}],"resource_version":"5","created":"2024-05-01T12:00:00Z",` +
		`"deleting":null,"watcher_node":"node-a","watcher":"watcher-x","session":"`
	if !strings.HasPrefix(first, `{"time":"`) || !strings.Contains(first, want) {
		t.Fatalf("line %s\nlacks %s", first, want)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", first[9:33]); err != nil {
		t.Fatalf("time %q: %v", first[9:33], err)
	}
}

func TestPeriodicResyncIsCountedNotPrinted(t *testing.T) {
	lw := &scriptedLW{watches: make(chan *watch.FakeWatcher, 4), lists: []any{podList("10", pod("a", "5"))}}
	out := &syncBuffer{}
	e := newEmitter(out, "node-a", "watcher-x")
	informer, err := newInformer(lw, options{resync: time.Second}, e)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { informer.RunWithContext(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	<-lw.watches
	eventually(t, "two resyncs", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.counts["resyncs"] >= 2
	})
	if got := summary(out.lines()); strings.Join(got, ",") != "SNAPSHOT a 5,WATCHER snapshot" {
		t.Fatalf("a resync printed lines: %v", got)
	}
}

func TestForbiddenListLogsAClearErrorAndRetries(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "",
		errFromString(`User "system:serviceaccount:lab:watcher" cannot list resource "pods" in API group "" in the namespace "lab"`))
	lw := &scriptedLW{watches: make(chan *watch.FakeWatcher, 4), lists: []any{forbidden, forbidden, podList("10")}}
	out, _, _ := start(t, lw, 0)
	<-lw.watches // the third list succeeded: the informer retried by itself
	eventually(t, "the snapshot", func() bool { return strings.Contains(out.raw(), `"status":"snapshot"`) })
	lines := out.lines()
	if got := summary(lines); strings.Join(got, ",") != "WATCHER error,WATCHER error,WATCHER snapshot" {
		t.Fatalf("lines: %v", got)
	}
	detail, hint := lines[0]["detail"].(string), lines[0]["hint"].(string)
	if !strings.Contains(detail, "forbidden") || !strings.Contains(detail, "cannot list resource") ||
		!strings.Contains(hint, "watcher-pod-reader") {
		t.Fatalf("error line: %v", lines[0])
	}
}

type errFromString string

func (e errFromString) Error() string { return string(e) }
