package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const manifests = "../k8s"

func TestRepositoryManifestsAreValid(t *testing.T) {
	findings, err := ValidateDir(manifests)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		t.Error(f)
	}
	kinds := map[string]int{}
	for _, o := range loadAll(t) {
		kinds[o.Obj.GetObjectKind().GroupVersionKind().Kind]++
	}
	for kind, min := range map[string]int{"StatefulSet": 1, "Deployment": 1, "Service": 3, "NetworkPolicy": 5, "Namespace": 1} {
		if kinds[kind] < min {
			t.Errorf("%d %s objects decoded, want at least %d (all: %v)", kinds[kind], kind, min, kinds)
		}
	}
}

func loadAll(t *testing.T) []Object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(manifests, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var objs []Object
	for _, f := range files {
		if filepath.Base(f) == kustomizationFile {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(filepath.Base(f), strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, got...)
	}
	return objs
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"unknown field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndatta: {}\n", "unknown field"},
		{"misspelt nested field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n  replica: 3\n", "unknown field"},
		{"duplicate field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {}\ndata: {}\n", "already set"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n  replicas: three\n", "replicas"},
		{"kind outside the allowed groups", "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: a}\n", "no kind"},
		{"not YAML", "apiVersion: v1\nkind: [\n", "document 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("x.yaml", strings.NewReader(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestDecodeSkipsCommentOnlyDocuments(t *testing.T) {
	got, err := Decode("x.yaml", strings.NewReader("# header\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n# trailer\n"))
	if err != nil || len(got) != 1 {
		t.Fatalf("got %d objects, err %v; want 1, nil", len(got), err)
	}
}

func ptr[T any](v T) *T { return &v }

func first[T any](objs []Object) T {
	for _, o := range objs {
		if v, ok := o.Obj.(T); ok {
			return v
		}
	}
	panic("no object of the wanted type")
}

// TestCheckFindsEachBrokenInvariant breaks one invariant at a time in the
// repository's own manifests and expects Check to name it.
func TestCheckFindsEachBrokenInvariant(t *testing.T) {
	gw := func(o []Object) *appsv1.Deployment { return first[*appsv1.Deployment](o) }
	iss := func(o []Object) *appsv1.StatefulSet { return first[*appsv1.StatefulSet](o) }
	tests := []struct {
		name   string
		mutate func([]Object) []Object
		want   string
	}{
		{"missing readiness probe", func(o []Object) []Object { gw(o).Spec.Template.Spec.Containers[0].ReadinessProbe = nil; return o }, "no readinessProbe"},
		{"missing liveness probe", func(o []Object) []Object { iss(o).Spec.Template.Spec.Containers[0].LivenessProbe = nil; return o }, "no livenessProbe"},
		{"writable root filesystem", func(o []Object) []Object {
			gw(o).Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = ptr(false)
			return o
		}, "readOnlyRootFilesystem"},
		{"no memory limit", func(o []Object) []Object {
			delete(gw(o).Spec.Template.Spec.Containers[0].Resources.Limits, corev1.ResourceMemory)
			return o
		}, "no memory limit"},
		{"root user", func(o []Object) []Object {
			iss(o).Spec.Template.Spec.SecurityContext.RunAsUser = ptr(int64(0))
			return o
		}, "user 0"},
		{"non-root not enforced", func(o []Object) []Object {
			s := &gw(o).Spec.Template.Spec
			s.SecurityContext.RunAsNonRoot = nil
			s.Containers[0].SecurityContext.RunAsNonRoot = nil
			return o
		}, "runAsNonRoot"},
		{"privilege escalation", func(o []Object) []Object {
			gw(o).Spec.Template.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
			return o
		}, "allowPrivilegeEscalation"},
		{"capabilities kept", func(o []Object) []Object {
			gw(o).Spec.Template.Spec.Containers[0].SecurityContext.Capabilities = nil
			return o
		}, "drop ALL"},
		{"no seccomp profile", func(o []Object) []Object { gw(o).Spec.Template.Spec.SecurityContext.SeccompProfile = nil; return o }, "seccompProfile"},
		{"service account token mounted", func(o []Object) []Object { gw(o).Spec.Template.Spec.AutomountServiceAccountToken = nil; return o }, "automountServiceAccountToken"},
		{"single gateway replica", func(o []Object) []Object { gw(o).Spec.Replicas = ptr(int32(1)); return o }, "at least 2"},
		{"latest image", func(o []Object) []Object {
			gw(o).Spec.Template.Spec.Containers[0].Image = "airlock-gateway:latest"
			return o
		}, "pinned tag"},
		{"untagged image", func(o []Object) []Object {
			gw(o).Spec.Template.Spec.Containers[0].Image = "registry:5000/airlock-gateway"
			return o
		}, "pinned tag"},
		{"literal secret in env", func(o []Object) []Object {
			c := &gw(o).Spec.Template.Spec.Containers[0]
			c.Env = append(c.Env, corev1.EnvVar{Name: "AIRLOCK_GATEWAY_API_KEY", Value: "sk-123"})
			return o
		}, "literal value"},
		{"secret inlined", func(o []Object) []Object {
			return append(o, Object{File: "s.yaml", Obj: &corev1.Secret{
				TypeMeta:   metav1.TypeMeta{Kind: "Secret", APIVersion: "v1"},
				ObjectMeta: metav1.ObjectMeta{Name: "airlock-issuer-kek", Namespace: "airlock"},
				StringData: map[string]string{"kek": "x"},
			}})
		}, "Secret holds data"},
		{"StatefulSet without volume", func(o []Object) []Object { iss(o).Spec.VolumeClaimTemplates = nil; return o }, "volumeClaimTemplates"},
		{"StatefulSet without headless service", func(o []Object) []Object { iss(o).Spec.ServiceName = "nope"; return o }, "headless"},
		{"undefined ConfigMap", func(o []Object) []Object {
			var out []Object
			for _, x := range o {
				if _, ok := x.Obj.(*corev1.ConfigMap); !ok {
					out = append(out, x)
				}
			}
			return out
		}, "ConfigMap \"airlock-config\" is not defined"},
		{"no default deny", func(o []Object) []Object {
			var out []Object
			for _, x := range o {
				if np, ok := x.Obj.(*networkingv1.NetworkPolicy); !ok || np.Name != "default-deny" {
					out = append(out, x)
				}
			}
			return out
		}, "default-deny"},
		{"service targets a missing port", func(o []Object) []Object {
			for _, x := range o {
				if s, ok := x.Obj.(*corev1.Service); ok && s.Name == "airlock-gateway" {
					s.Spec.Ports[0].TargetPort.StrVal = "grcp"
				}
			}
			return o
		}, "no container declares"},
		{"service selects nothing", func(o []Object) []Object {
			for _, x := range o {
				if s, ok := x.Obj.(*corev1.Service); ok && s.Name == "airlock-issuer" {
					s.Spec.Selector = map[string]string{"app.kubernetes.io/name": "isuer"}
				}
			}
			return o
		}, "matches no workload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			findings := Check(tt.mutate(loadAll(t)))
			for _, f := range findings {
				if strings.Contains(f, tt.want) {
					return
				}
			}
			t.Errorf("no finding mentions %q; got %q", tt.want, findings)
		})
	}
}

func TestCheckKeepsRequestsAndLimitsApart(t *testing.T) {
	objs := loadAll(t)
	c := &first[*appsv1.Deployment](objs).Spec.Template.Spec.Containers[0]
	c.Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Mi")}
	findings := strings.Join(Check(objs), "\n")
	if !strings.Contains(findings, "no cpu request") || strings.Contains(findings, "no memory request") {
		t.Errorf("findings = %s", findings)
	}
}

func TestKustomizationListsExistingFilesStrictly(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [missing.yaml]\nresource: [typo]\n")
	findings := checkKustomization(dir, mustRead(t, filepath.Join(dir, "kustomization.yaml")))
	if len(findings) != 1 || !strings.Contains(findings[0], "unknown field") {
		t.Errorf("typo: findings = %q", findings)
	}
	write("kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [missing.yaml]\n")
	findings = checkKustomization(dir, mustRead(t, filepath.Join(dir, "kustomization.yaml")))
	if len(findings) != 1 || !strings.Contains(findings[0], "missing.yaml") {
		t.Errorf("missing resource: findings = %q", findings)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadDir decodes what ValidateDir would for dir (its files and its
// kustomization's resources).
func loadDir(t *testing.T, dir string) []Object {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	b := mustRead(t, filepath.Join(dir, kustomizationFile))
	var k kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatal(err)
	}
	for _, r := range k.Resources {
		files = append(files, filepath.Join(dir, r))
	}
	seen := map[string]bool{}
	var objs []Object
	for _, f := range files {
		f = filepath.Clean(f)
		if seen[f] || filepath.Base(f) == kustomizationFile {
			continue
		}
		seen[f] = true
		got, err := Decode(f, strings.NewReader(string(mustRead(t, f))))
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, got...)
	}
	return objs
}

func TestHAVariantIsValidAndHasThreeIssuersOnPostgres(t *testing.T) {
	const dir = manifests + "/ha"
	findings, err := ValidateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		t.Error(f)
	}
	objs := loadDir(t, dir)
	var issuer *appsv1.Deployment
	pdb := false
	for _, o := range objs {
		switch v := o.Obj.(type) {
		case *appsv1.Deployment:
			if v.Name == "airlock-issuer" {
				issuer = v
			}
		case *appsv1.StatefulSet:
			t.Errorf("the HA variant holds StatefulSet %s: the single-node issuer must not run beside the replicas", v.Name)
		case *policyv1.PodDisruptionBudget:
			pdb = pdb || v.Name == "airlock-issuer"
		}
	}
	if issuer == nil || issuer.Spec.Replicas == nil || *issuer.Spec.Replicas != 3 || !pdb {
		t.Fatalf("HA variant: issuer Deployment %v with a PodDisruptionBudget %v, want 3 replicas and one", issuer != nil, pdb)
	}
}

func TestCheckFindsEachBrokenHAInvariant(t *testing.T) {
	issuer := func(o []Object) *appsv1.Deployment {
		for _, x := range o {
			if d, ok := x.Obj.(*appsv1.Deployment); ok && d.Name == "airlock-issuer" {
				return d
			}
		}
		t.Fatal("no issuer Deployment")
		return nil
	}
	tests := []struct {
		name   string
		mutate func([]Object) []Object
		want   string
	}{
		{"replicas on the embedded store", func(o []Object) []Object {
			c := &issuer(o).Spec.Template.Spec.Containers[0]
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "AIRLOCK_ISSUER_POSTGRES_URL" })
			return o
		}, "need a shared store"},
		{"database URL as a literal", func(o []Object) []Object {
			c := &issuer(o).Spec.Template.Spec.Containers[0]
			for i := range c.Env {
				if c.Env[i].Name == "AIRLOCK_ISSUER_POSTGRES_URL" {
					c.Env[i].ValueFrom, c.Env[i].Value = nil, "postgres://db/airlock"
				}
			}
			return o
		}, "need a shared store"},
		{"readiness blind to the database", func(o []Object) []Object {
			issuer(o).Spec.Template.Spec.Containers[0].ReadinessProbe.GRPC.Service = nil
			return o
		}, `"readiness"`},
		{"no disruption budget", func(o []Object) []Object {
			return slices.DeleteFunc(o, func(x Object) bool {
				p, ok := x.Obj.(*policyv1.PodDisruptionBudget)
				return ok && p.Name == "airlock-issuer"
			})
		}, "no PodDisruptionBudget"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			findings := Check(tt.mutate(loadDir(t, manifests+"/ha")))
			for _, f := range findings {
				if strings.Contains(f, tt.want) {
					return
				}
			}
			t.Errorf("no finding mentions %q; got %q", tt.want, findings)
		})
	}
}
