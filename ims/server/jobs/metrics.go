package jobs

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/ims/server/store"
)

// jobStatuses are IMS's job statuses, the label values of the jobs gauge.
var jobStatuses = []string{"creating", "fetching_image", "fetching_recipe", "waiting_for_repos",
	"building_image", "packaging_artifacts", "waiting_on_user", "error", "success"}

func (r *Runner) registerMetrics() error {
	r.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "imsbuild_serve_job_duration_seconds",
		Help:    "Duration of IMS jobs from their start (not their queueing) to their end, by job type and final status.",
		Buckets: []float64{1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200},
	}, []string{"job_type", "status"})
	if err := r.cfg.Registry.Register(r.duration); err != nil {
		return err
	}
	r.steps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imsbuild_serve_job_steps_total",
		Help: "Engine steps of IMS jobs by result: cached (a cache hit), built, failed.",
	}, []string{"result"})
	for _, res := range []string{"cached", "built", "failed"} {
		r.steps.WithLabelValues(res) // present at 0 before the first job
	}
	if err := r.cfg.Registry.Register(r.steps); err != nil {
		return err
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imsbuild_serve_jobs", Help: "IMS job records by status.",
	}, []string{"status"})
	return r.cfg.Registry.Register(jobsCollector{r.cfg.Store, g})
}

// jobsCollector counts the job records by status when scraped.
type jobsCollector struct {
	st *store.Store
	g  *prometheus.GaugeVec
}

func (c jobsCollector) Describe(ch chan<- *prometheus.Desc) { c.g.Describe(ch) }
func (c jobsCollector) Collect(ch chan<- prometheus.Metric) {
	n := map[string]int{}
	c.st.Jobs.Each(func(j store.Job) bool {
		n[j.Status]++
		return true
	})
	for _, s := range jobStatuses {
		c.g.WithLabelValues(s).Set(float64(n[s]))
	}
	c.g.Collect(ch)
}

// countStep counts the engine steps that end: a cache hit, a build or a
// failure.
func (r *Runner) countStep(ev engine.Event) {
	switch ev.Status {
	case engine.StatusCached:
		r.steps.WithLabelValues("cached").Inc()
	case engine.StatusDone:
		r.steps.WithLabelValues("built").Inc()
	case engine.StatusFailed:
		r.steps.WithLabelValues("failed").Inc()
	}
}
