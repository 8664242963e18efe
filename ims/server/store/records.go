package store

// The records below are IMS's, with its keys in its order. A live record
// and its deleted form share one type: Deleted is set only on the latter.

// Link is an IMS ArtifactLinkRecord.
type Link struct {
	Path string `json:"path"`
	Etag string `json:"etag"`
	Type string `json:"type"`
}

// TemplateEntry is one template_dictionary item of a recipe.
type TemplateEntry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Recipe is an IMS RecipeRecord (and DeletedRecipeRecord).
type Recipe struct {
	ID                 string           `json:"id"`
	Created            string           `json:"created"`
	Deleted            string           `json:"deleted,omitempty"`
	Name               string           `json:"name"`
	RecipeType         string           `json:"recipe_type"`
	LinuxDistribution  string           `json:"linux_distribution"`
	Link               *Link            `json:"link"`
	Arch               string           `json:"arch"`
	RequireDKMS        bool             `json:"require_dkms"`
	TemplateDictionary *[]TemplateEntry `json:"template_dictionary"`
}

// Image is an IMS ImageRecord (and DeletedImageRecord).
type Image struct {
	ID       string            `json:"id"`
	Created  string            `json:"created"`
	Deleted  string            `json:"deleted,omitempty"`
	Name     string            `json:"name"`
	Link     *Link             `json:"link"`
	Arch     string            `json:"arch"`
	Metadata map[string]string `json:"metadata"`
}

// PublicKey is an IMS PublicKeyRecord (and DeletedPublicKeyRecord).
type PublicKey struct {
	ID        string `json:"id"`
	Created   string `json:"created"`
	Deleted   string `json:"deleted,omitempty"`
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

// ConnectionInfo is where an SSH container of a job listens.
type ConnectionInfo struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// SSHContainer is one ssh_containers entry of a job.
type SSHContainer struct {
	Name           string                    `json:"name"`
	Jail           bool                      `json:"jail"`
	Status         string                    `json:"status,omitempty"`
	ConnectionInfo map[string]ConnectionInfo `json:"connection_info,omitempty"`
}

// Job is an IMS JobRecord: the 24 keys IMS dumps.
type Job struct {
	ID                       string         `json:"id"`
	Created                  string         `json:"created"`
	JobType                  string         `json:"job_type"`
	ImageRootArchiveName     string         `json:"image_root_archive_name"`
	KernelFileName           string         `json:"kernel_file_name"`
	InitrdFileName           string         `json:"initrd_file_name"`
	KernelParametersFileName string         `json:"kernel_parameters_file_name"`
	Status                   string         `json:"status"`
	ArtifactID               string         `json:"artifact_id"`
	PublicKeyID              string         `json:"public_key_id"`
	KubernetesJob            string         `json:"kubernetes_job"`
	KubernetesService        string         `json:"kubernetes_service"`
	KubernetesConfigmap      string         `json:"kubernetes_configmap"`
	KubernetesPVC            string         `json:"kubernetes_pvc"`
	KubernetesSecret         *string        `json:"kubernetes_secret"`
	KubernetesNamespace      string         `json:"kubernetes_namespace"`
	RemoteBuildNode          string         `json:"remote_build_node"`
	SSHContainers            []SSHContainer `json:"ssh_containers"`
	EnableDebug              bool           `json:"enable_debug"`
	ResultantImageID         *string        `json:"resultant_image_id"`
	BuildEnvSize             int            `json:"build_env_size"`
	JobMemSize               int            `json:"job_mem_size"`
	Arch                     string         `json:"arch"`
	RequireDKMS              bool           `json:"require_dkms"`
}

// RemoteBuildNode is an IMS RemoteBuildNodeRecord, keyed by xname.
type RemoteBuildNode struct {
	XName string `json:"xname"`
}

// Key returns the id the record is stored under.
func (r Recipe) Key() string          { return r.ID }
func (r Image) Key() string           { return r.ID }
func (r PublicKey) Key() string       { return r.ID }
func (r Job) Key() string             { return r.ID }
func (r RemoteBuildNode) Key() string { return r.XName }

// RecentManifests returns the manifest links of at most n images, the
// newest first, those named name before the others: where an image
// about to be published most likely finds its artifacts already in S3.
func RecentManifests(images *Collection[Image], name string, n int) []string {
	var same, other []string
	images.mu.RLock()
	defer images.mu.RUnlock()
	for i := len(images.order) - 1; i >= 0 && len(same) < n; i-- {
		e := images.order[i]
		if e == nil || e.rec.Link == nil || e.rec.Link.Path == "" {
			continue
		}
		if e.rec.Name == name {
			same = append(same, e.rec.Link.Path)
		} else if len(other) < n {
			other = append(other, e.rec.Link.Path)
		}
	}
	return append(same, other...)[:min(n, len(same)+len(other))]
}
