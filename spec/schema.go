package spec

import "github.com/hashicorp/hcl/v2"

// The schemas of every block. They are explicit so that unknown blocks and
// arguments get "Unsupported ..." diagnostics with a "Did you mean".

var topSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "imsbuild"},
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "repository", LabelNames: []string{"name"}},
		{Type: "recipe", LabelNames: []string{"name"}},
		{Type: "image", LabelNames: []string{"label"}},
		{Type: "publish", LabelNames: []string{"kind", "name"}},
	},
}

var imsbuildSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "required_version"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "cache"}, {Type: "signing"}, {Type: "executor", LabelNames: []string{"kind"}}},
}

var executorSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "kubeconfig"}, {Name: "context"}, {Name: "namespace"}, {Name: "image"},
		{Name: "service_account"}, {Name: "node_selector"}, {Name: "tolerations"}, {Name: "resources"},
		{Name: "parallelism"}, {Name: "ttl_after_finished"}, {Name: "image_pull_policy"},
		{Name: "backoff_limit"}, {Name: "host_network"}, {Name: "ssh_service_type"},
	},
}

var signingSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "key", Required: true}},
}

var cacheSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "dir"}, {Name: "from"}, {Name: "to"}, {Name: "salt"}, {Name: "env"},
	},
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "default"}, {Name: "description"}, {Name: "sensitive"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "condition", Required: true},
		{Name: "error_message", Required: true},
	},
}

var repositorySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type", Required: true},
		{Name: "url", Required: true},
		{Name: "distribution"},
		{Name: "components"},
		{Name: "wait_timeout"},
		{Name: "track_repos"},
	},
}

var recipeSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "source", Required: true},
		{Name: "type"},
		{Name: "arch"},
		{Name: "profiles"},
		{Name: "builder_image"},
		{Name: "linux_distribution"},
		{Name: "require_dkms"},
		{Name: "template"},
		{Name: "repositories"},
	},
}

var imageSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "name"},
		{Name: "arch"},
		{Name: "recipe"},
		{Name: "from"},
		{Name: "import"},
		{Name: "kernel_file_name"},
		{Name: "initrd_file_name"},
		{Name: "kernel_parameters"},
		{Name: "ca_certificates"},
		{Name: "debug_on_failure"},
		{Name: "cache_interactive"},
		{Name: "normalize"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "squashfs"},
		{Type: "customize"},
		{Type: "interactive"},
	},
}

var squashfsSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "compression"}, {Name: "level"}, {Name: "block_size"}, {Name: "exclude"},
	},
}

var customizeSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "script"}, {Name: "inline"}, {Name: "files"}, {Name: "env"},
		{Name: "jail"}, {Name: "network"}, {Name: "timeout"}, {Name: "builder_image"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "file"}},
}

var fileSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "source", Required: true},
		{Name: "destination", Required: true},
		{Name: "mode"},
		{Name: "owner"},
	},
}

var interactiveSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "public_keys", Required: true},
		{Name: "listen"},
		{Name: "timeout"},
		{Name: "jail"},
		{Name: "network"},
	},
}

// publishAttrs are the arguments of each publish kind besides images and recipes.
var publishAttrs = map[string][]hcl.AttributeSchema{
	"dir": {{Name: "path", Required: true}},
	"s3": {
		{Name: "endpoint"}, {Name: "region"}, {Name: "bucket"}, {Name: "prefix"},
		{Name: "path_style"}, {Name: "ca_bundle"},
	},
	"oci": {{Name: "repository", Required: true}, {Name: "tags"}, {Name: "insecure"}},
	"ims": {{Name: "endpoint", Required: true}, {Name: "token"}, {Name: "ca_bundle"}},
}

func publishSchema(kind string) *hcl.BodySchema {
	attrs := []hcl.AttributeSchema{{Name: "images"}, {Name: "recipes"}}
	return &hcl.BodySchema{Attributes: append(attrs, publishAttrs[kind]...)}
}
