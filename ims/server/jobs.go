package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/imsbuild/imsbuild/ims/server/store"
)

// JobStatuses are IMS's job statuses (the server's enum, which has
// packaging_artifacts although the OpenAPI file leaves it out).
var JobStatuses = []string{"creating", "fetching_image", "fetching_recipe", "waiting_for_repos",
	"building_image", "packaging_artifacts", "waiting_on_user", "error", "success"}

// IMS's job defaults (SPEC §2.5).
const (
	defaultBuildEnvSize = 60
	defaultJobMemSize   = 8
	jobNamespace        = "ims"
)

// detailNoRunner is the 500 of a valid job POST on a server that cannot
// run jobs: IMS's answer when it cannot create the job's Kubernetes objects.
const detailNoRunner = "The job could not be started: this imsbuild serve has no job runner yet. " +
	"The request was valid; no job record was kept."

var jobFields = []field{
	{name: "job_type", required: true, check: oneOf("create", "customize")},
	{name: "artifact_id", required: true, check: uuidField},
	{name: "public_key_id", required: true, check: uuidField},
	{name: "image_root_archive_name", required: true, check: nonEmpty},
	{name: "enable_debug", check: boolean},
	{name: "build_env_size", check: positiveInt},
	{name: "job_mem_size", check: positiveInt},
	{name: "kernel_file_name", check: str},
	{name: "initrd_file_name", check: nonEmpty},
	{name: "kernel_parameters_file_name", check: nonEmpty},
	{name: "ssh_containers", check: list(sshContainer)},
	{name: "require_dkms", check: boolean},
}

var jobPatchFields = []field{
	{name: "status", check: oneOf(JobStatuses...)},
	{name: "resultant_image_id", check: uuidField},
}

func (s *Server) jobRoutes(p string, segs []string) (endpoint, bool) {
	switch len(segs) {
	case 0:
		return endpoint{pattern: p, handlers: handlers{
			http.MethodGet: listOf(s.st.Jobs), http.MethodPost: s.createJob, http.MethodDelete: s.deleteJobs,
		}}, true
	case 1:
		id := segs[0]
		return endpoint{pattern: p + "/{id}", handlers: handlers{
			http.MethodGet:    func(w http.ResponseWriter, r *http.Request) { getOf(s.st.Jobs)(w, r, id) },
			http.MethodPatch:  func(w http.ResponseWriter, r *http.Request) { s.patchJob(w, r, id) },
			http.MethodDelete: func(w http.ResponseWriter, r *http.Request) { s.deleteJob(w, r, id) },
		}}, true
	case 2:
		if segs[1] != "log" {
			return endpoint{}, false
		}
		id := segs[0]
		return endpoint{pattern: p + "/{id}/log", handlers: handlers{
			http.MethodGet: func(w http.ResponseWriter, r *http.Request) { s.getJobLog(w, r, id) },
		}}, true
	}
	return endpoint{}, false
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) {
	vals, ok := readValid(w, r, jobFields)
	if !ok {
		return
	}
	job, status, detail, err := s.newJob(r.Context(), vals)
	if err != nil {
		s.writeLinkProblem(w, r, err)
		return
	}
	if status != 0 {
		writeProblem(w, status, detail)
		return
	}
	if s.runner == nil {
		writeProblem(w, http.StatusInternalServerError, detailNoRunner)
		return
	}
	// The runner stores the record before it runs anything, so that the
	// job's status updates find it.
	job, err = s.runner.Start(r.Context(), job)
	if err != nil {
		s.log.Error("start job", "job", job.ID, "err", err)
		writeProblem(w, http.StatusInternalServerError, "The job could not be started: "+err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, contentJSON, job)
}

// newJob applies IMS's POST rules in IMS's order (SPEC §2.5) and returns
// the record, or a status and detail to answer with, or an S3 error.
func (s *Server) newJob(ctx context.Context, vals map[string]any) (store.Job, int, string, error) {
	id := uuid.NewString()
	j := store.Job{
		ID: id, Created: timestamp(s.now()), Status: "creating",
		JobType: vals["job_type"].(string), ArtifactID: vals["artifact_id"].(string),
		PublicKeyID: vals["public_key_id"].(string), ImageRootArchiveName: vals["image_root_archive_name"].(string),
		InitrdFileName: "initrd", KernelParametersFileName: "kernel-parameters",
		BuildEnvSize: defaultBuildEnvSize, JobMemSize: defaultJobMemSize,
		KubernetesJob:       "cray-ims-" + id + "-" + vals["job_type"].(string),
		KubernetesService:   "cray-ims-" + id + "-service",
		KubernetesConfigmap: "cray-ims-" + id + "-configmap",
		KubernetesPVC:       "cray-ims-" + id + "-job-claim",
		KubernetesNamespace: jobNamespace,
		SSHContainers:       []store.SSHContainer{},
	}
	if v, ok := vals["enable_debug"]; ok {
		j.EnableDebug = v.(bool)
	}
	if v, ok := vals["build_env_size"]; ok {
		j.BuildEnvSize = v.(int)
	}
	if v, ok := vals["job_mem_size"]; ok {
		j.JobMemSize = v.(int)
	}
	if v, ok := vals["initrd_file_name"]; ok {
		j.InitrdFileName = v.(string)
	}
	if v, ok := vals["kernel_parameters_file_name"]; ok {
		j.KernelParametersFileName = v.(string)
	}
	// 2. SSH containers.
	containers, userContainers := vals["ssh_containers"].([]any)
	switch {
	case j.JobType == "create" && userContainers:
		return j, http.StatusBadRequest, "ssh_containers may not be specified for a create job.", nil
	case len(containers) > 1:
		return j, http.StatusBadRequest, "Only one SSH container is supported; ssh_containers lists " + strconv.Itoa(len(containers)) + ".", nil
	case len(containers) == 1:
		m := containers[0].(map[string]any)
		jail, _ := m["jail"].(bool)
		j.SSHContainers = []store.SSHContainer{{Name: m["name"].(string), Jail: jail}}
	case j.JobType == "create" && j.EnableDebug:
		j.SSHContainers = []store.SSHContainer{{Name: "debug", Jail: false}}
	case j.JobType == "customize":
		j.SSHContainers = []store.SSHContainer{{Name: "customize", Jail: false}}
	}
	// 3. The artifact, its link and its object.
	var link *store.Link
	var recipeDKMS bool
	if j.JobType == "create" {
		rec, ok := s.st.Recipes.Get(j.ArtifactID)
		if !ok {
			return j, http.StatusBadRequest, "Invalid artifact_id. No IMS recipe record found matching id=" + j.ArtifactID + ".", nil
		}
		link, j.Arch, recipeDKMS = rec.Link, rec.Arch, rec.RequireDKMS
	} else {
		img, ok := s.st.Images.Get(j.ArtifactID)
		if !ok {
			return j, http.StatusBadRequest, "Invalid artifact_id. No IMS image record found matching id=" + j.ArtifactID + ".", nil
		}
		link, j.Arch = img.Link, img.Arch
	}
	if j.Arch == "" {
		j.Arch = "x86_64"
	}
	if link == nil {
		return j, http.StatusBadRequest, "The IMS " + map[string]string{"create": "recipe", "customize": "image"}[j.JobType] +
			" record " + j.ArtifactID + " has no link to an artifact.", nil
	}
	if _, err := s.headLink(ctx, link); err != nil {
		return j, 0, "", err
	}
	if j.JobType == "customize" {
		m, _, _, err := s.readManifest(ctx, link)
		if err != nil {
			return j, 0, "", err
		}
		rootfs := 0
		if m != nil {
			for _, a := range m.Artifacts {
				if strings.HasPrefix(a.Type, mediaRootfs) {
					rootfs++
				}
			}
		}
		if rootfs != 1 {
			return j, http.StatusBadRequest, fmt.Sprintf("The image manifest lists %d rootfs artifacts; IMS needs exactly one.", rootfs), nil
		}
	}
	// 5. DKMS and the kernel name follow the arch.
	j.KernelFileName = "vmlinuz"
	if j.Arch == "aarch64" {
		j.KernelFileName = "Image"
	}
	if v, ok := vals["kernel_file_name"]; ok {
		j.KernelFileName = v.(string)
	}
	switch v, ok := vals["require_dkms"]; {
	case j.Arch == "aarch64":
		j.RequireDKMS = true
	case ok:
		j.RequireDKMS = v.(bool)
	case j.JobType == "create":
		j.RequireDKMS = recipeDKMS
	default:
		j.RequireDKMS = true
	}
	// 6. The public key.
	if _, ok := s.st.PublicKeys.Get(j.PublicKeyID); !ok {
		return j, http.StatusBadRequest, "Invalid public_key_id. No IMS public key record found matching id=" + j.PublicKeyID + ".", nil
	}
	// 7. Connection info of the SSH containers.
	for i := range j.SSHContainers {
		j.SSHContainers[i].Status = "pending"
		j.SSHContainers[i].ConnectionInfo = map[string]store.ConnectionInfo{
			"customer_access": {Host: id + ".ims.cmn.shasta.local", Port: 22},
			"cluster.local":   {Host: "cray-ims-" + id + "-service.ims.svc.cluster.local", Port: 22},
		}
	}
	return j, 0, "", nil
}

func (s *Server) patchJob(w http.ResponseWriter, r *http.Request, id string) {
	if _, ok := s.st.Jobs.Get(id); !ok {
		writeProblem(w, http.StatusNotFound, detailNotFound)
		return
	}
	vals, ok := readValid(w, r, jobPatchFields)
	if !ok {
		return
	}
	var out store.Job
	found := true
	err := s.st.Jobs.Update(func(tx store.Tx[store.Job]) error {
		j, ok := tx.Get(id)
		if !ok {
			found = false
			return nil
		}
		if v, ok := vals["status"]; ok {
			j.Status = v.(string)
		}
		if v, ok := vals["resultant_image_id"]; ok {
			img := v.(string)
			j.ResultantImageID = &img
		}
		out = j
		return tx.Put(j)
	})
	s.writePatched(w, r, found, err, out)
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request, id string) {
	if _, ok := s.st.Jobs.Get(id); !ok {
		writeProblem(w, http.StatusNotFound, detailNotFound)
		return
	}
	// IMS deletes the job's Kubernetes job with its record: the job stops.
	if s.runner != nil {
		s.runner.Cancel(id)
	}
	if err := s.st.Jobs.Remove(id); err != nil {
		s.storeFailure(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// getJobLog serves a job's log as plain text (an imsbuild addition: IMS
// keeps job logs in Kubernetes).
func (s *Server) getJobLog(w http.ResponseWriter, _ *http.Request, id string) {
	if _, ok := s.st.Jobs.Get(id); !ok || s.runner == nil {
		writeProblem(w, http.StatusNotFound, detailNotFound)
		return
	}
	rc, err := s.runner.Log(id)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("open job log", "job", id, "err", err)
		}
		writeProblem(w, http.StatusNotFound, detailNotFound)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, rc)
}

// ageRE is one term of an age filter: a number and a unit (w, d, h, m).
var ageRE = regexp.MustCompile(`(?i)^(?:\d{1,6}[wdhm])+$`)
var ageTermRE = regexp.MustCompile(`(?i)(\d{1,6})([wdhm])`)

// parseAge reads an age filter such as "1d", "2w3d" or "30m".
func parseAge(s string) (time.Duration, error) {
	if !ageRE.MatchString(s) {
		return 0, errors.New("age must be a number of weeks, days, hours or minutes, as in 1d, 6h or 2w3d")
	}
	var d time.Duration
	for _, m := range ageTermRE.FindAllStringSubmatch(s, -1) {
		n, _ := strconv.Atoi(m[1])
		unit := map[string]time.Duration{"w": 7 * 24 * time.Hour, "d": 24 * time.Hour, "h": time.Hour, "m": time.Minute}[strings.ToLower(m[2])]
		d += time.Duration(n) * unit
	}
	return d, nil
}

// deleteJobs is DELETE /jobs with IMS's filters: status and job_type
// (repeatable) and age; they combine with AND. A bad value is a 400 with
// the message in the title and no detail, as IMS sends it.
func (s *Server) deleteJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	badFilter := func(msg string) {
		writeJSON(w, http.StatusBadRequest, contentProblem, map[string]any{"status": http.StatusBadRequest, "title": msg})
	}
	statuses, types := q["status"], q["job_type"]
	for _, st := range statuses {
		if !slices.Contains(JobStatuses, st) {
			badFilter("Invalid status '" + st + "'. Valid statuses: " + strings.Join(JobStatuses, ", "))
			return
		}
	}
	for _, t := range types {
		if t != "create" && t != "customize" {
			badFilter("Invalid job_type '" + t + "'. Valid job types: create, customize")
			return
		}
	}
	var cutoff time.Time
	if ages := q["age"]; len(ages) > 0 {
		d, err := parseAge(ages[0])
		if err != nil {
			badFilter("Invalid age '" + ages[0] + "': " + err.Error())
			return
		}
		cutoff = s.now().UTC().Add(-d)
	}
	var doomed []string
	err := s.st.Jobs.Update(func(tx store.Tx[store.Job]) error {
		tx.Each(func(j store.Job) bool {
			if len(statuses) > 0 && !slices.Contains(statuses, j.Status) {
				return true
			}
			if len(types) > 0 && !slices.Contains(types, j.JobType) {
				return true
			}
			if !cutoff.IsZero() {
				created, err := parseTimestamp(j.Created)
				if err != nil || !created.Before(cutoff) {
					return true
				}
			}
			doomed = append(doomed, j.ID)
			return true
		})
		for _, id := range doomed {
			tx.Remove(id)
		}
		return nil
	})
	if err != nil {
		s.storeFailure(w, r, err)
		return
	}
	// The records are gone, so the jobs' last status updates find nothing
	// to write; cancel them as IMS deletes their Kubernetes jobs.
	if s.runner != nil {
		for _, id := range doomed {
			s.runner.Cancel(id)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
