package spec

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// executorKinds are the labels of an executor block.
var executorKinds = []string{"kubernetes"}

// quantity is Kubernetes' resource quantity syntax: a decimal number and a
// binary (Ki…Ei), decimal (n, u, m, k, M…E) or exponent suffix.
var quantity = regexp.MustCompile(`^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$`)

// labelValue is a Kubernetes label value (node_selector values) and
// labelKey a label key with an optional DNS prefix.
var (
	labelValue = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$`)
	labelKey   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	// dnsLabel is a namespace or service account name.
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	dnsName  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
)

// decodeExecutor decodes the imsbuild.executor block.
func (l *loader) decodeExecutor(b *hcl.Block, es *ExecutorSettings) {
	kind := b.Labels[0]
	if !slices.Contains(executorKinds, kind) {
		l.errorf(b.LabelRanges[0], "Unsupported executor",
			"%q is not an executor; use one of %s.%s", kind, quoteList(executorKinds), didYouMean(kind, executorKinds))
		return
	}
	es.Kind = kind
	es.DeclRange = b.DefRange
	c := l.content(b.Body, executorSchema)
	a := l.attrs(c.Attributes, l.ctx)
	a.path("kubeconfig", &es.Kubeconfig)
	a.str("context", &es.Context)
	if attr := a.str("namespace", &es.Namespace); attr != nil && !dnsLabel.MatchString(es.Namespace) {
		l.errorf(attr.Expr.Range(), "Invalid namespace", "%q is not a Kubernetes namespace name: lowercase letters, digits and '-', at most 63.", es.Namespace)
	}
	if attr := a.str("image", &es.Image); attr != nil && (es.Image == "" || strings.ContainsAny(es.Image, " \t\n")) {
		l.errorf(attr.Expr.Range(), "Invalid image", "%q is not an image reference like \"registry.example/imsbuild-builder:1.0\".", es.Image)
	}
	if attr := a.str("service_account", &es.ServiceAccount); attr != nil && !dnsName.MatchString(es.ServiceAccount) {
		l.errorf(attr.Expr.Range(), "Invalid service_account", "%q is not a Kubernetes service account name.", es.ServiceAccount)
	}
	if attr := a.strMap("node_selector", &es.NodeSelector); attr != nil {
		for _, k := range slices.Sorted(maps.Keys(es.NodeSelector)) {
			if !labelKey.MatchString(k) || !labelValue.MatchString(es.NodeSelector[k]) {
				l.errorf(attr.Expr.Range(), "Invalid node_selector", "%q = %q is not a Kubernetes label.", k, es.NodeSelector[k])
			}
		}
	}
	l.decodeTolerations(a, es)
	l.decodeResources(a, es)
	if attr := a.integer("parallelism", &es.Parallelism); attr != nil && es.Parallelism < 0 {
		l.errorf(attr.Expr.Range(), "Invalid parallelism", "parallelism must be 0 (no bound) or more, not %d.", es.Parallelism)
	}
	a.duration("ttl_after_finished", &es.TTLAfterFinished)
	a.oneOf("image_pull_policy", &es.ImagePullPolicy, "Always", "IfNotPresent", "Never")
	var backoff int
	if attr := a.integer("backoff_limit", &backoff); attr != nil {
		if backoff < 0 {
			l.errorf(attr.Expr.Range(), "Invalid backoff_limit", "backoff_limit must be 0 or more, not %d.", backoff)
		} else {
			es.BackoffLimit = &backoff
		}
	}
	a.boolean("host_network", &es.HostNetwork)
	a.oneOf("ssh_service_type", &es.SSHServiceType, "ClusterIP", "NodePort", "LoadBalancer")
}

var tolerationType = cty.List(cty.ObjectWithOptionalAttrs(map[string]cty.Type{
	"key": cty.String, "operator": cty.String, "value": cty.String, "effect": cty.String, "toleration_seconds": cty.Number,
}, []string{"key", "operator", "value", "effect", "toleration_seconds"}))

func (l *loader) decodeTolerations(a attrs, es *ExecutorSettings) {
	v, attr := a.value("tolerations", tolerationType)
	if attr == nil {
		return
	}
	rng := attr.Expr.Range()
	str := func(o cty.Value, name string) string {
		if f := o.GetAttr(name); !f.IsNull() {
			return f.AsString()
		}
		return ""
	}
	for i, o := range v.AsValueSlice() {
		if o.IsNull() {
			l.errorf(rng, "Invalid tolerations", "Element %d of tolerations is null.", i)
			continue
		}
		t := Toleration{Key: str(o, "key"), Operator: str(o, "operator"), Value: str(o, "value"), Effect: str(o, "effect")}
		if s := o.GetAttr("toleration_seconds"); !s.IsNull() {
			n, acc := s.AsBigFloat().Int64()
			if acc != 0 || n < 0 {
				l.errorf(rng, "Invalid tolerations", "Element %d: toleration_seconds must be a whole number of seconds, 0 or more.", i)
				continue
			}
			t.Seconds = &n
		}
		switch {
		case t.Operator != "" && t.Operator != "Equal" && t.Operator != "Exists":
			l.errorf(rng, "Invalid tolerations", "Element %d: operator %q is not \"Equal\" or \"Exists\".", i, t.Operator)
		case t.Operator == "Exists" && t.Value != "":
			l.errorf(rng, "Invalid tolerations", "Element %d: operator \"Exists\" takes no value.", i)
		case t.Effect != "" && !slices.Contains([]string{"NoSchedule", "PreferNoSchedule", "NoExecute"}, t.Effect):
			l.errorf(rng, "Invalid tolerations", "Element %d: effect %q is not \"NoSchedule\", \"PreferNoSchedule\" or \"NoExecute\".", i, t.Effect)
		case t.Key != "" && !labelKey.MatchString(t.Key):
			l.errorf(rng, "Invalid tolerations", "Element %d: key %q is not a Kubernetes label key.", i, t.Key)
		case t.Key == "" && t.Operator != "Exists":
			l.errorf(rng, "Invalid tolerations", "Element %d: without a key the operator must be \"Exists\".", i)
		default:
			es.Tolerations = append(es.Tolerations, t)
		}
	}
}

func (l *loader) decodeResources(a attrs, es *ExecutorSettings) {
	v, attr := a.value("resources", cty.Map(cty.Map(cty.String)))
	if attr == nil {
		return
	}
	rng := attr.Expr.Range()
	for it := v.ElementIterator(); it.Next(); {
		k, m := it.Element()
		kind := k.AsString()
		var dst *map[string]string
		switch kind {
		case "requests":
			dst = &es.Requests
		case "limits":
			dst = &es.Limits
		default:
			l.errorf(rng, "Invalid resources", "%q is not \"requests\" or \"limits\".%s", kind, didYouMean(kind, []string{"requests", "limits"}))
			continue
		}
		if m.IsNull() {
			continue
		}
		*dst = map[string]string{}
		for it := m.ElementIterator(); it.Next(); {
			rk, rv := it.Element()
			if rv.IsNull() || !quantity.MatchString(rv.AsString()) {
				l.errorf(rng, "Invalid resources", "%s.%s: %s is not a quantity like \"2\", \"500m\" or \"4Gi\".", kind, rk.AsString(), fmtValue(rv))
				continue
			}
			(*dst)[rk.AsString()] = rv.AsString()
		}
	}
}

func fmtValue(v cty.Value) string {
	if v.IsNull() {
		return "null"
	}
	return fmt.Sprintf("%q", v.AsString())
}
