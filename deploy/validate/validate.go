// Command validate checks Airlock's Kubernetes manifests offline: every
// document must strict-decode into its k8s.io/api type (an unknown or
// duplicated field fails, as a typo would silently be dropped by a lenient
// apply), and the deployment invariants below must hold. It needs no
// cluster and no network, so CI runs it on every change.
//
// It lives in its own Go module so that k8s.io/api never enters the main
// module's dependency graph.
//
// usage: go run . [dir]   (default ../k8s); exit status 1 on any finding.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// kustomizationFile is decoded on its own: it is kustomize's input, not a
// Kubernetes API object.
const kustomizationFile = "kustomization.yaml"

// Object is one decoded manifest document and where it came from.
type Object struct {
	File string
	Obj  runtime.Object
}

func (o Object) String() string {
	m, ok := o.Obj.(interface {
		GetName() string
		GetNamespace() string
	})
	kind := o.Obj.GetObjectKind().GroupVersionKind().Kind
	if !ok {
		return fmt.Sprintf("%s: %s", o.File, kind)
	}
	if m.GetNamespace() == "" {
		return fmt.Sprintf("%s: %s/%s", o.File, kind, m.GetName())
	}
	return fmt.Sprintf("%s: %s %s/%s", o.File, kind, m.GetNamespace(), m.GetName())
}

// newDecoder returns a strict universal deserializer for the API groups the
// manifests may use; any other kind is an error, so a new kind is added
// here on purpose rather than slipping through unchecked.
func newDecoder() (runtime.Decoder, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, networkingv1.AddToScheme, policyv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer(), nil
}

// Decode strict-decodes every YAML document in r (file names errors).
func Decode(file string, r io.Reader) ([]Object, error) {
	dec, err := newDecoder()
	if err != nil {
		return nil, err
	}
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out []Object
	for i := 1; ; i++ {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		out = append(out, Object{File: file, Obj: obj})
	}
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// kustomization is the part of kustomize's file this repository uses;
// decoding it strictly catches typos such as "resource:".
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images"`
}

// ValidateDir decodes every *.yaml file in dir and every file its
// kustomization lists as a resource (an overlay such as k8s/ha names files of
// its base, ../x.yaml), and returns the findings of Check over all of them
// together, plus decode errors and kustomization problems; none means valid.
func ValidateDir(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.yaml manifests in %s", dir)
	}
	var findings []string
	if b, err := os.ReadFile(filepath.Join(dir, kustomizationFile)); err == nil {
		findings = append(findings, checkKustomization(dir, b)...)
		var k kustomization
		if yaml.UnmarshalStrict(b, &k) == nil {
			for _, r := range k.Resources {
				files = append(files, filepath.Join(dir, r))
			}
		}
	}
	for i, f := range files {
		files[i] = filepath.Clean(f)
	}
	sort.Strings(files)
	files = slices.Compact(files)
	var objs []Object
	for _, f := range files {
		name, err := filepath.Rel(dir, f)
		if err != nil {
			name = f
		}
		if filepath.Base(f) == kustomizationFile {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // reported by checkKustomization
			}
			return nil, err
		}
		got, err := Decode(name, bytes.NewReader(b))
		if err != nil {
			findings = append(findings, err.Error())
			continue
		}
		objs = append(objs, got...)
	}
	return append(findings, Check(objs)...), nil
}

func checkKustomization(dir string, b []byte) []string {
	var k kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		return []string{fmt.Sprintf("%s: %v", kustomizationFile, err)}
	}
	var out []string
	if k.Kind != "Kustomization" {
		out = append(out, fmt.Sprintf("%s: kind %q, want Kustomization", kustomizationFile, k.Kind))
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			out = append(out, fmt.Sprintf("%s: resource %s: %v", kustomizationFile, r, err))
		}
	}
	return out
}

// Check returns one finding per violated invariant across objs:
//   - no Secret carries data (secrets are referenced, created out of band);
//   - every workload's pod runs as non-root with the RuntimeDefault seccomp
//     profile and without a service account token;
//   - every container has readiness and liveness probes, CPU and memory
//     requests and limits, a read-only root filesystem, no privilege
//     escalation, all capabilities dropped, and a pinned image tag;
//   - no env var that looks like a secret has a literal value;
//   - ConfigMaps referenced are defined; Deployments run at least two
//     replicas; StatefulSets claim a volume and name a headless Service;
//   - Services select some workload and target ports that exist;
//   - every namespace with workloads has a default-deny NetworkPolicy;
//   - every Deployment has a PodDisruptionBudget selecting its pods;
//   - an issuer (image airlock-issuer) with several replicas, which only a
//     Deployment of it has, runs on PostgreSQL (--postgres-url, or
//     AIRLOCK_ISSUER_POSTGRES_URL from a Secret): the embedded store is one
//     process's file; and its readiness probe asks for the "readiness"
//     health service, which reflects the database's reachability.
func Check(objs []Object) []string {
	var out []string
	add := func(o Object, format string, a ...any) {
		out = append(out, o.String()+": "+fmt.Sprintf(format, a...))
	}
	configMaps := map[string]bool{}
	headless := map[string]bool{}
	denyAll := map[string]bool{}
	type workload struct {
		ns     string
		labels map[string]string
		ports  []corev1.ContainerPort
	}
	var workloads []workload
	var pdbs []*policyv1.PodDisruptionBudget
	for _, o := range objs {
		switch v := o.Obj.(type) {
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, v)
		case *corev1.ConfigMap:
			configMaps[v.Namespace+"/"+v.Name] = true
		case *corev1.Service:
			if v.Spec.ClusterIP == corev1.ClusterIPNone {
				headless[v.Namespace+"/"+v.Name] = true
			}
		case *networkingv1.NetworkPolicy:
			if isDefaultDeny(v) {
				denyAll[v.Namespace] = true
			}
		}
	}
	for _, o := range objs {
		var pod *corev1.PodTemplateSpec
		var ns string
		switch v := o.Obj.(type) {
		case *corev1.Secret:
			if len(v.Data) > 0 || len(v.StringData) > 0 {
				add(o, "Secret holds data in the repository; reference it and create it out of band")
			}
		case *appsv1.Deployment:
			pod, ns = &v.Spec.Template, v.Namespace
			if v.Spec.Replicas == nil || *v.Spec.Replicas < 2 {
				add(o, "replicas must be at least 2 for availability")
			}
			if !slices.ContainsFunc(pdbs, func(p *policyv1.PodDisruptionBudget) bool {
				return p.Namespace == v.Namespace && p.Spec.Selector != nil && selects(p.Spec.Selector.MatchLabels, v.Spec.Template.Labels)
			}) {
				add(o, "no PodDisruptionBudget selects its pods: a node drain may take every replica at once")
			}
			for _, f := range checkReplicatedIssuer(&v.Spec.Template) {
				add(o, "%s", f)
			}
		case *appsv1.StatefulSet:
			pod, ns = &v.Spec.Template, v.Namespace
			if len(v.Spec.VolumeClaimTemplates) == 0 {
				add(o, "StatefulSet has no volumeClaimTemplates: its state would not persist")
			}
			if !headless[v.Namespace+"/"+v.Spec.ServiceName] {
				add(o, "serviceName %q is not a headless Service in these manifests", v.Spec.ServiceName)
			}
		case *appsv1.DaemonSet:
			pod, ns = &v.Spec.Template, v.Namespace
		}
		if pod == nil {
			continue
		}
		var ports []corev1.ContainerPort
		for _, c := range pod.Spec.Containers {
			ports = append(ports, c.Ports...)
		}
		workloads = append(workloads, workload{ns: ns, labels: pod.Labels, ports: ports})
		if !denyAll[ns] {
			add(o, "namespace %q has no default-deny NetworkPolicy", ns)
		}
		for _, f := range checkPod(pod, ns, configMaps) {
			add(o, "%s", f)
		}
	}
	for _, o := range objs {
		svc, ok := o.Obj.(*corev1.Service)
		if !ok || len(svc.Spec.Selector) == 0 {
			continue
		}
		var match *workload
		for i := range workloads {
			if workloads[i].ns == svc.Namespace && selects(svc.Spec.Selector, workloads[i].labels) {
				match = &workloads[i]
				break
			}
		}
		if match == nil {
			add(o, "selector %v matches no workload", svc.Spec.Selector)
			continue
		}
		for _, p := range svc.Spec.Ports {
			if !hasPort(match.ports, p.TargetPort.String(), p.TargetPort.IntValue()) {
				add(o, "port %q targets %s, which no container declares", p.Name, p.TargetPort.String())
			}
		}
	}
	return out
}

func checkPod(pod *corev1.PodTemplateSpec, ns string, configMaps map[string]bool) []string {
	var out []string
	spec := pod.Spec
	psc := spec.SecurityContext
	podNonRoot := psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		out = append(out, "pod securityContext.seccompProfile must be RuntimeDefault")
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		out = append(out, "pod runs as user 0")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		out = append(out, "automountServiceAccountToken must be false: Airlock never calls the Kubernetes API")
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && !configMaps[ns+"/"+v.ConfigMap.Name] {
			out = append(out, fmt.Sprintf("volume %q: ConfigMap %q is not defined", v.Name, v.ConfigMap.Name))
		}
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		p := func(format string, a ...any) {
			out = append(out, fmt.Sprintf("container %q: ", c.Name)+fmt.Sprintf(format, a...))
		}
		init := slices.ContainsFunc(spec.InitContainers, func(ic corev1.Container) bool { return ic.Name == c.Name })
		if !init {
			if c.ReadinessProbe == nil {
				p("no readinessProbe")
			}
			if c.LivenessProbe == nil {
				p("no livenessProbe")
			}
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Limits[r]; !ok {
				p("no %s limit", r)
			}
			if _, ok := c.Resources.Requests[r]; !ok {
				p("no %s request", r)
			}
		}
		sc := c.SecurityContext
		switch {
		case sc == nil:
			p("no securityContext")
		default:
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				p("readOnlyRootFilesystem must be true")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				p("allowPrivilegeEscalation must be false")
			}
			if sc.Privileged != nil && *sc.Privileged {
				p("must not be privileged")
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				p("capabilities must drop ALL")
			}
			if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				p("runs as user 0")
			}
			if !podNonRoot && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
				p("runAsNonRoot must be true (pod or container)")
			}
		}
		if i := strings.LastIndex(c.Image, ":"); i < 0 || strings.Contains(c.Image[i:], "/") || strings.HasSuffix(c.Image, ":latest") {
			p("image %q must carry a pinned tag (not latest)", c.Image)
		}
		for _, e := range c.Env {
			if e.Value != "" && looksSecret(e.Name) {
				p("env %s has a literal value; take secrets from a Secret", e.Name)
			}
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil && !configMaps[ns+"/"+e.ValueFrom.ConfigMapKeyRef.Name] {
				p("env %s: ConfigMap %q is not defined", e.Name, e.ValueFrom.ConfigMapKeyRef.Name)
			}
		}
	}
	return out
}

// checkReplicatedIssuer checks the issuer containers of a pod template that
// runs as several replicas.
func checkReplicatedIssuer(pod *corev1.PodTemplateSpec) []string {
	var out []string
	for _, c := range pod.Spec.Containers {
		if !strings.HasPrefix(c.Image, "airlock-issuer:") && !strings.Contains(c.Image, "/airlock-issuer:") {
			continue
		}
		postgres := slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--postgres-url") }) ||
			slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
				return e.Name == "AIRLOCK_ISSUER_POSTGRES_URL" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
			})
		if !postgres {
			out = append(out, fmt.Sprintf("container %q: several issuer replicas need a shared store: set AIRLOCK_ISSUER_POSTGRES_URL from a Secret (the embedded store is one process's file)", c.Name))
		}
		if r := c.ReadinessProbe; r == nil || r.GRPC == nil || r.GRPC.Service == nil || *r.GRPC.Service != "readiness" {
			out = append(out, fmt.Sprintf("container %q: the readinessProbe must ask for the gRPC health service \"readiness\" (database reachability)", c.Name))
		}
	}
	return out
}

func looksSecret(name string) bool {
	n := strings.ToUpper(name)
	for _, w := range []string{"TOKEN", "SECRET", "PASSWORD", "KEK", "API_KEY", "PRIVATE"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// isDefaultDeny reports a policy selecting every pod, for both directions,
// with no allow rules.
func isDefaultDeny(p *networkingv1.NetworkPolicy) bool {
	return len(p.Spec.PodSelector.MatchLabels) == 0 && len(p.Spec.PodSelector.MatchExpressions) == 0 &&
		slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) &&
		slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) &&
		len(p.Spec.Ingress) == 0 && len(p.Spec.Egress) == 0
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func hasPort(ports []corev1.ContainerPort, name string, number int) bool {
	for _, p := range ports {
		if p.Name == name || (number != 0 && int(p.ContainerPort) == number) {
			return true
		}
	}
	return false
}
