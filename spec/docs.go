package spec

import (
	"context"
	"slices"

	"github.com/hashicorp/hcl/v2"
)

// AttrDoc documents one argument of a block for the reference pages in
// docs/language. Whether it is required comes from the block's schema.
type AttrDoc struct {
	Name        string
	Type        string // as a user writes it: string, bool, list(string), duration, reference, …
	Required    bool   // filled from the schema by BlockDocs
	Default     string // "" when there is none
	Description string // Markdown
	Key         string // what enters the cache key, Markdown; "" = nothing
	Example     string // an HCL expression
}

// BlockDoc documents one block type: its arguments and nested blocks.
type BlockDoc struct {
	ID     string   // "image", "image.squashfs", "publish.s3"
	Header string   // how the block is written, e.g. image "<label>" { … }
	Blocks []string // nested block types, from the schema
	Attrs  []AttrDoc
}

// attrDocs is the hand-written half of the reference; blockSchemas is the
// other half. A test fails when they disagree, so an argument cannot be
// added to a schema without documenting it.
var attrDocs = map[string][]AttrDoc{
	"imsbuild": {
		{Name: "required_version", Type: "string", Example: `">= 0.1"`,
			Description: "A version constraint (`>= 0.1`, `~> 0.1`) on the build language; an older imsbuild rejects the build instead of misreading it."},
	},
	"imsbuild.cache": {
		{Name: "dir", Type: "string (path)", Default: "`.imsbuild/cache`", Example: `"/var/cache/imsbuild"`,
			Description: "The local cache: blobs and step results. Relative to the build directory; `~` is `$HOME`. `--cache-dir` overrides it."},
		{Name: "from", Type: "list(string)", Default: "`[]`", Example: `["s3://ci-cache/imsbuild?endpoint=https://rgw.example:8080&path_style=true"]`,
			Description: "Remote caches to read results from: `s3://bucket/prefix[?endpoint=…&region=…&path_style=true&ca_bundle=FILE]` or `oci://registry/repository[?insecure=true]`. `--cache-from` adds more."},
		{Name: "to", Type: "string", Example: `"oci://registry.example/ci/imsbuild-cache"`,
			Description: "A remote cache that receives every new result (and is read too). Same URL forms as `from`; `--cache-to` overrides it."},
		{Name: "salt", Type: "string", Default: `""`, Example: `"site-2026"`,
			Description: "A string joined into every key: change it to invalidate the whole cache on purpose.",
			Key:         "every step's key"},
		{Name: "env", Type: "list(string)", Default: "`[]`", Example: `["HTTP_PROXY", "HTTPS_PROXY"]`,
			Description: "Names of the host environment variables that steps see (customize scripts, kiwi-ng, SSH sessions). Nothing else of the host environment gets in.",
			Key:         "the names and values of the listed variables that are set, in every image and prepare key"},
	},
	"imsbuild.signing": {
		{Name: "key", Type: "string (path)", Example: `"keys/cosign.key"`,
			Description: "The private key that signs each image's provenance (`provenance.intoto.jsonl`, published beside the image): an ed25519 or ECDSA P-256 key in PEM (PKCS#8 or SEC 1), or a key made by `cosign generate-key-pair`, decrypted with the password in `$COSIGN_PASSWORD`. Relative to the build directory. `imsbuild build --signing-key` overrides it. Check an image with `imsbuild verify --key` and the public key; see [verifying images](../guides/verify.md)."},
	},
	"imsbuild.executor": {
		{Name: "kubeconfig", Type: "string (path)", Default: "in-cluster config, else `$KUBECONFIG` or `~/.kube/config`", Example: `"~/.kube/config"`,
			Description: "The kubeconfig of the cluster that builds the steps. Relative to the build directory. `--kubeconfig` overrides it."},
		{Name: "context", Type: "string", Default: "the kubeconfig's current context", Example: `"mgmt"`,
			Description: "The kubeconfig context to use."},
		{Name: "namespace", Type: "string", Default: `"default"`, Example: `"imsbuild"`,
			Description: "The namespace of the step Jobs (and their Secrets). `--namespace` overrides it. The service account that runs imsbuild needs the Role in `deploy/kubernetes/rbac.yaml` there."},
		{Name: "image", Type: "string", Example: `"registry.example/imsbuild-builder:0.1"`,
			Description: "The builder image: imsbuild, kiwi-ng and the tools of a step (`make builder-image`). Required. Its imsbuild must be the version of the one that orchestrates: a step's key is checked in the pod."},
		{Name: "service_account", Type: "string", Default: "the namespace's default", Example: `"imsbuild-builder"`,
			Description: "The service account of the step pods. Its token is not mounted: a step talks to the remote cache only."},
		{Name: "node_selector", Type: "map(string)", Default: "`{}`", Example: `{ "node-role.kubernetes.io/worker" = "" }`,
			Description: "Node labels a step pod's node must have. imsbuild adds `kubernetes.io/arch` for the step's arch (`amd64` for x86_64; `arm64` for aarch64 when a node it may use has it, else `amd64`, emulated); a `kubernetes.io/arch` given here wins, and steps of the other arch run emulated."},
		{Name: "tolerations", Type: "list(object)", Default: "`[]`", Example: `[{ key = "builders", operator = "Exists", effect = "NoSchedule" }]`,
			Description: "Taints the step pods tolerate: objects with `key`, `operator` (`Equal`, `Exists`), `value`, `effect` and `toleration_seconds`, as in a pod spec."},
		{Name: "resources", Type: "map(map(string))", Default: "`{}`", Example: `{ requests = { cpu = "2", memory = "4Gi" }, limits = { memory = "8Gi" } }`,
			Description: "The step container's `requests` and `limits` (Kubernetes quantities)."},
		{Name: "parallelism", Type: "number", Default: "0 (no bound but `-j`)", Example: `16`,
			Description: "How many step Jobs run at once."},
		{Name: "ttl_after_finished", Type: "string (duration)", Default: `"1h"`, Example: `"24h"`,
			Description: "How long a finished Job, its pods and their logs stay before Kubernetes deletes them."},
		{Name: "image_pull_policy", Type: "string", Default: "the cluster's (`IfNotPresent` for a tagged image)", Example: `"Never"`,
			Description: "`Always`, `IfNotPresent` or `Never` (an image loaded into each node's container runtime)."},
		{Name: "backoff_limit", Type: "number", Default: `2`, Example: `4`,
			Description: "How many times a failed, evicted or killed step pod is run again before the step fails."},
		{Name: "host_network", Type: "bool", Default: `false`, Example: `true`,
			Description: "Runs the step pods in their node's network namespace: for a remote cache that listens on the node's address only, or a cluster whose pod network reaches nothing outside."},
		{Name: "ssh_service_type", Type: "string", Default: `"ClusterIP"`, Example: `"LoadBalancer"`,
			Description: "The type of the Service, named like the step's Job, that lets people into an interactive step's SSH environment, or a failed one's debug shell (port 22): `ClusterIP` (from inside the cluster), `NodePort` or `LoadBalancer` (from outside, as IMS's customer-access network). See [remote steps](../remote-steps.md#interactive-steps)."},
	},
	"variable": {
		{Name: "type", Type: "type constraint", Default: "any", Example: `list(string)`,
			Description: "`string`, `number`, `bool`, `list(T)`, `map(T)`, `object({…})`, `any`. Values from `-var` and `IMSBUILD_VAR_<name>` are taken as text for `string` (and untyped) variables and parsed as HCL for the others."},
		{Name: "default", Type: "any", Example: `"bookworm"`,
			Description: "The value when nothing else sets one. A variable without a default must be set, or validation fails."},
		{Name: "description", Type: "string", Example: `"Debian release of the node image"`,
			Description: "What the variable is for; for readers of the build."},
		{Name: "sensitive", Type: "bool", Default: "`false`", Example: `true`,
			Description: "Marks the value as a secret (a token, a password); see [security](../security.md) for what imsbuild does with secrets."},
	},
	"variable.validation": {
		{Name: "condition", Type: "bool expression", Example: `contains(["bookworm", "trixie"], var.release)`,
			Description: "Must be true for the value; it may use `var.<this variable>` and functions."},
		{Name: "error_message", Type: "string", Example: `"release must be bookworm or trixie."`,
			Description: "The diagnostic shown when the condition is false."},
	},
	"repository": {
		{Name: "type", Type: `"apt" | "rpm-md"`, Example: `"apt"`,
			Description: "The repository format: a Debian archive or an rpm-md (zypper, dnf) repository.",
			Key:         "the prepare key of each recipe image using it"},
		{Name: "url", Type: "string (URL)", Example: `"http://deb.debian.org/debian"`,
			Description: "Where the repository is. imsbuild probes its metadata (`dists/<distribution>/InRelease` or `Release`; `repodata/repomd.xml`) before kiwi runs. Not in the key: a mirror of the same content keeps the cache."},
		{Name: "distribution", Type: "string", Example: `"bookworm"`,
			Description: "The apt suite (`dists/<distribution>`). Unused for rpm-md.",
			Key:         "the prepare key of each recipe image using it"},
		{Name: "components", Type: "list(string)", Example: `["main", "contrib"]`,
			Description: "The apt components, for readers of the build; kiwi takes the components from the recipe's `config.xml`, and imsbuild does not use this value yet."},
		{Name: "wait_timeout", Type: "duration", Default: "`0s` (probe once)", Example: `"10m"`,
			Description: "How long to wait for the repository's metadata to answer 200 before failing the prepare step (the IMS \"wait for repos\" step), retrying with backoff from 1 s to 10 s."},
		{Name: "track_repos", Type: "bool", Default: "`false`", Example: `true`,
			Description: "Key recipe images by the digest of this repository's metadata, so a changed repository rebuilds them (`--track-repos` does it for every repository).",
			Key:         "the sha256 of the metadata file (`InRelease`/`Release`, `repomd.xml`) in the prepare key"},
	},
	"recipe": {
		{Name: "source", Type: "string (path or URL)", Example: `"./recipes/node"`,
			Description: "The kiwi-ng description: a directory or an IMS `recipe.tgz`, relative to the build directory, or a URL.",
			Key:         "the tree digest of the directory (paths, modes, symlink targets, contents; never mtimes), or of the archive"},
		{Name: "type", Type: `"kiwi-ng"`, Default: `"kiwi-ng"`, Example: `"kiwi-ng"`,
			Description: "The IMS recipe type; `kiwi-ng` is the only one."},
		{Name: "arch", Type: `"x86_64" | "aarch64"`, Default: `"x86_64"`, Example: `"aarch64"`,
			Description: "The architecture built; images of this recipe inherit it. `aarch64` on an x86_64 host builds under qemu user-mode emulation (qemu-user-static and binfmt_misc; see the aarch64 guide), several times slower.",
			Key:         "the prepare key, with the emulator's version and digest when emulated"},
		{Name: "profiles", Type: "list(string)", Default: "`[]`", Example: `["KIS"]`,
			Description: "kiwi `--profile` names to build.",
			Key:         "the prepare key"},
		{Name: "builder_image", Type: "string", Example: `"registry.example/kiwi-builder:9.24"`,
			Description: "Run the kiwi-ng of this OCI image (a registry reference or an OCI layout directory) in a privileged runc container instead of the host's kiwi-ng, as IMS pins its builder container.",
			Key:         "the image's manifest digest, replacing the host kiwi-ng version"},
		{Name: "linux_distribution", Type: "string", Example: `"sles15"`,
			Description: "The IMS `linux_distribution` of the recipe record (publish `s3`/`ims`).",
			Key:         "the prepare key"},
		{Name: "require_dkms", Type: "bool", Default: "`true`", Example: `false`,
			Description: "The IMS `require_dkms` of the recipe record (publish `s3`/`ims`), true by default as in IMS: IMS create jobs of the recipe take it. Nothing imsbuild builds depends on it."},
		{Name: "template", Type: "map(string)", Default: "`{}`", Example: `{ release = "bookworm" }`,
			Description: "The IMS `template_dictionary`: each `{{ key }}` in the description's `config.xml` is replaced by its value before kiwi runs.",
			Key:         "the prepare key"},
		{Name: "repositories", Type: "list(reference)", Default: "`[]`", Example: `[repository.debian]`,
			Description: "The repositories to wait for (and track) before kiwi runs.",
			Key:         "each repository's type and distribution, and its metadata digest when tracked"},
	},
	"image": {
		{Name: "name", Type: "string", Default: "the label", Example: `"node-${var.release}"`,
			Description: "The IMS image name, used in records, manifests and the image id.",
			Key:         "the image key"},
		{Name: "arch", Type: `"x86_64" | "aarch64"`, Default: "the recipe's or parent's, else `\"x86_64\"`", Example: `"aarch64"`,
			Description: "The image architecture, recorded in IMS records and manifests and as the OCI platform; customize scripts of an `aarch64` image run emulated on an x86_64 host.",
			Key:         "the image key, with the emulator's version and digest when emulated"},
		{Name: "recipe", Type: "reference", Example: `recipe.node`,
			Description: "Build the image from a recipe with `kiwi-ng system prepare` (IMS `create`). Exactly one of `recipe`, `from` and `import`.",
			Key:         "the recipe name and the prepared root's digest (the prepare step has its own key)"},
		{Name: "from", Type: "reference", Example: `image.base`,
			Description: "Customize a copy of another image (IMS `customize`); the parent stays as it is.",
			Key:         "the parent's output digests, not its key (early cutoff)"},
		{Name: "import", Type: "string (path or URL)", Example: `"./roots/base.tar.zst"`,
			Description: "Take an existing root: a directory, `.tar`, `.tar.gz`, `.tar.zst` or squashfs file; or a published image, `oci://registry/repo:tag` or `s3://bucket/<id>/manifest.json?endpoint=…`.",
			Key:         "the tree digest of the root (or file), or the published manifest's digest"},
		{Name: "kernel_file_name", Type: "string", Default: "`\"vmlinuz\"`; `\"Image\"` for `aarch64`, as IMS", Example: `"vmlinuz"`,
			Description: "The kernel in the image's `/boot` (a file name, no directory); without it, the newest `vmlinuz-*` or `Image-*` there.",
			Key:         "the image key"},
		{Name: "initrd_file_name", Type: "string", Default: `"initrd"`, Example: `"initrd.img"`,
			Description: "The initrd in the image's `/boot` (a file name, no directory).",
			Key:         "the image key"},
		{Name: "kernel_parameters", Type: "string", Example: `"console=ttyS0"`,
			Description: "The image's `boot_parameters` artifact. Without it, the image's own `/boot/kernel-parameters` is packed, as IMS does, else its parent's `boot_parameters`. Set, it wins over that file, and images made `from` this one inherit it unless they set their own.",
			Key:         "the image key"},
		{Name: "ca_certificates", Type: "list(string)", Default: "`[]`", Example: `[file("certs/site-ca.pem")]`,
			Description: "PEM certificates added to the image's trust store. For recipe images they are trusted while packages install too (the IMS build-ca-rpm step).",
			Key:         "the sha256 of each certificate, in the image and prepare keys"},
		{Name: "debug_on_failure", Type: "bool", Default: "`false`", Example: `true`,
			Description: "When the image's step fails, open an SSH environment in the failed root (IMS `enable_debug`); the step still fails afterwards. `--debug-on-failure` does it for every image."},
		{Name: "cache_interactive", Type: "bool", Default: "`false`", Example: `true`,
			Description: "Cache the result of an interactive image like any other. Without it an interactive image rebuilds every time, since its result depends on a person."},
		{Name: "normalize", Type: "bool", Default: "`true`", Example: `false`,
			Description: "Before packing, clear what differs between two builds of the same inputs: truncate package manager logs, remove package caches, dpkg's `-old` backups, ld.so's `aux-cache`, random seeds and outdated Python bytecode, empty `/etc/machine-id`, clamp `/etc/shadow`'s last-change days to the epoch, give `/` and `/dev` mode 0755 (see [reproducible images](../reproducible.md)). `false` packs the root as the build left it.",
			Key:         "the image key"},
	},
	"image.squashfs": {
		{Name: "compression", Type: `"zstd" | "xz" | "gzip" | "lz4" | "lzo"`, Default: `"zstd"`, Example: `"xz"`,
			Description: "The mksquashfs compressor of the rootfs.",
			Key:         "the image key"},
		{Name: "level", Type: "number", Default: "the compressor's (zstd: 3)", Example: `3`,
			Description: "The compression level: zstd 1–22, gzip and lzo 1–9; xz and lz4 take none.",
			Key:         "the image key"},
		{Name: "block_size", Type: "string (size)", Default: `"1M"`, Example: `"128K"`,
			Description: "The squashfs block size, a power of two from `4K` to `1M`.",
			Key:         "the image key"},
		{Name: "exclude", Type: "list(string)", Default: "`[]`", Example: `["var/log/*"]`,
			Description: "Extra mksquashfs `-e` patterns relative to the root, besides kiwi's leftovers.",
			Key:         "the image key"},
	},
	"image.customize": {
		{Name: "script", Type: "string (path)", Example: `"scripts/compute.sh"`,
			Description: "A script file, run with `/bin/sh -e` (its `#!` line is not used). Either `script` or `inline`; several customize blocks run in order.",
			Key:         "the script's content digest"},
		{Name: "inline", Type: "string", Example: `"echo compute > /etc/hostname"`,
			Description: "Script text run with `/bin/sh -e`.",
			Key:         "the text's digest"},
		{Name: "files", Type: "map(string)", Default: "`{}`", Example: `{ "/etc/motd" = "files/motd" }`,
			Description: "Host files copied into the image before the script runs: absolute destination in the image = source path relative to the build directory.",
			Key:         "each destination with its source's content digest"},
		{Name: "env", Type: "map(string)", Default: "`{}`", Example: `{ SITE = "lab" }`,
			Description: "Extra environment variables of the script.",
			Key:         "the names and values"},
		{Name: "jail", Type: "bool", Default: "`true`", Example: `false`,
			Description: "`true`: the image root is `/` (chroot-like). `false`: the script runs in the builder environment (the host's tools, or `builder_image`) with the image at `/mnt/image`.",
			Key:         "the image key"},
		{Name: "network", Type: "bool", Default: "`false`", Example: `true`,
			Description: "Give the script the host's network. Off, it has only a loopback interface.",
			Key:         "the image key"},
		{Name: "timeout", Type: "duration", Default: "none", Example: `"10m"`,
			Description: "Kill the script and fail the step after this long.",
			Key:         "the image key"},
		{Name: "builder_image", Type: "string", Example: `"registry.example/tools:1"`,
			Description: "Run a non-jailed (`jail = false`) script in this OCI image (registry reference or OCI layout) under runc, the image at `/mnt/image`.",
			Key:         "the builder image's manifest digest"},
	},
	"image.customize.file": {
		{Name: "source", Type: "string (path)", Example: `"files/sshd_config"`,
			Description: "The host file, relative to the build directory.",
			Key:         "its content digest"},
		{Name: "destination", Type: "string", Example: `"/etc/ssh/sshd_config"`,
			Description: "The absolute path in the image; each destination once per customize block.",
			Key:         "the image key"},
		{Name: "mode", Type: "string (octal)", Default: "the source's mode", Example: `"0600"`,
			Description: "The mode to set, setuid/setgid/sticky bits included (`4755`).",
			Key:         "the image key"},
		{Name: "owner", Type: "string", Default: "root for a new file, else unchanged", Example: `"root:root"`,
			Description: "`user`, `user:group`, `uid` or `uid:gid`; names are looked up in the image's `/etc/passwd` and `/etc/group`.",
			Key:         "the image key"},
	},
	"image.interactive": {
		{Name: "public_keys", Type: "list(string)", Example: `[file("~/.ssh/id_ed25519.pub")]`,
			Description: "The SSH public keys allowed in (`ssh-ed25519 AAAA… user@host`); at least one."},
		{Name: "listen", Type: "string", Default: `"127.0.0.1:0"`, Example: `"0.0.0.0:2222"`,
			Description: "The address of the SSH server; port 0 picks a free one."},
		{Name: "timeout", Type: "duration", Default: `"2h"`, Example: `"30m"`,
			Description: "Fail the step when nobody completes the session within this time."},
		{Name: "jail", Type: "bool", Default: "`true`", Example: `false`,
			Description: "`true`: sessions run inside the image, done with `touch /tmp/complete`. `false`: the builder environment with the image at `/mnt/image`, done with `touch /mnt/image/complete`."},
		{Name: "network", Type: "bool", Default: "`false`", Example: `true`,
			Description: "Give the sessions the host's network."},
	},
	"publish.dir": {
		{Name: "images", Type: "list(reference)", Example: `[image.base, image.compute]`,
			Description: "The images to publish."},
		{Name: "recipes", Type: "list(reference)",
			Description: "Not allowed here: recipes are published by `s3` and registered by `ims`."},
		{Name: "path", Type: "string (path)", Example: `"out"`,
			Description: "The output directory: `boot-images/<id>/…` and `records/images/<id>.json`, relative to the build directory."},
	},
	"publish.s3": {
		{Name: "images", Type: "list(reference)", Example: `[image.compute]`,
			Description: "The images to upload in the IMS layout: `<prefix><id>/rootfs`, `kernel`, `initrd`, `manifest.json`."},
		{Name: "recipes", Type: "list(reference)", Example: `[recipe.node]`,
			Description: "Recipes to upload as IMS `recipe.tgz` archives to bucket `ims`, key `recipes/<id>/recipe.tgz`."},
		{Name: "endpoint", Type: "string (URL)", Default: "AWS S3", Example: `"https://rgw.example:8080"`,
			Description: "An S3-compatible endpoint (Ceph RGW, MinIO), `http://` or `https://`."},
		{Name: "region", Type: "string", Default: `"us-east-1"`, Example: `"us-east-1"`,
			Description: "The signing region."},
		{Name: "bucket", Type: "string", Default: `"boot-images"`, Example: `"boot-images"`,
			Description: "The image bucket."},
		{Name: "prefix", Type: "string", Default: `""`, Example: `"site-a/"`,
			Description: "A key prefix for images (not recipes)."},
		{Name: "path_style", Type: "bool", Default: "`false`", Example: `true`,
			Description: "Path-style URLs (`endpoint/bucket/key`), which RGW and MinIO usually need."},
		{Name: "ca_bundle", Type: "string (path)", Example: `"certs/rgw-ca.pem"`,
			Description: "A PEM bundle to trust for the endpoint's TLS certificate."},
	},
	"publish.oci": {
		{Name: "images", Type: "list(reference)", Example: `[image.compute]`,
			Description: "The images to push, one OCI artifact each."},
		{Name: "recipes", Type: "list(reference)",
			Description: "Not allowed here."},
		{Name: "repository", Type: "string", Example: `"registry.example/hpc/${image.name}"`,
			Description: "The repository, without a scheme. Evaluated per image: `image.name`, `image.label` and `image.arch` are the image being pushed."},
		{Name: "tags", Type: "list(string)", Default: `["latest"]`, Example: `["bookworm", "2026-12"]`,
			Description: "The tags each image gets."},
		{Name: "insecure", Type: "bool", Default: "`false`", Example: `true`,
			Description: "Allow plain HTTP to the registry. Without it only loopback registries (127.0.0.1, ::1, localhost) may answer over plain HTTP; any other, private addresses included, must speak HTTPS. Imports from `oci://` follow the same rule."},
	},
	"publish.ims": {
		{Name: "images", Type: "list(reference)", Example: `[image.compute]`,
			Description: "Images to register; each must also be published by an `s3` (or `dir`) block of the build: its bucket gets the image again under the IMS record id."},
		{Name: "recipes", Type: "list(reference)", Example: `[recipe.node]`,
			Description: "Recipes to register; each must also be in the `recipes` of an `s3` publish."},
		{Name: "endpoint", Type: "string (URL)", Example: `"https://api-gw.example/apis/ims"`,
			Description: "The IMS API base URL."},
		{Name: "token", Type: "string", Example: `env("IMS_TOKEN")`,
			Description: "The bearer token; take it from the environment with `env()` rather than writing it down."},
		{Name: "ca_bundle", Type: "string (path)", Example: `"certs/api-gw-ca.pem"`,
			Description: "A PEM bundle for the endpoint's TLS certificate. Trusted besides the system certificates."},
	},
}

// blockHeaders say how each block is written.
var blockHeaders = map[string]string{
	"imsbuild":             `imsbuild { … }`,
	"imsbuild.cache":       `imsbuild { cache { … } }`,
	"imsbuild.signing":     `imsbuild { signing { … } }`,
	"imsbuild.executor":    `imsbuild { executor "kubernetes" { … } }`,
	"variable":             `variable "<name>" { … }`,
	"variable.validation":  `variable "<name>" { validation { … } }`,
	"repository":           `repository "<name>" { … }`,
	"recipe":               `recipe "<name>" { … }`,
	"image":                `image "<label>" { … }`,
	"image.squashfs":       `image "<label>" { squashfs { … } }`,
	"image.customize":      `image "<label>" { customize { … } }`,
	"image.customize.file": `image "<label>" { customize { file { … } } }`,
	"image.interactive":    `image "<label>" { interactive { … } }`,
	"publish.dir":          `publish "dir" "<name>" { … }`,
	"publish.s3":           `publish "s3" "<name>" { … }`,
	"publish.oci":          `publish "oci" "<name>" { … }`,
	"publish.ims":          `publish "ims" "<name>" { … }`,
}

// blockSchemas maps each documented block to the schema it is decoded with.
func blockSchemas() map[string]*hcl.BodySchema {
	m := map[string]*hcl.BodySchema{
		"imsbuild":             imsbuildSchema,
		"imsbuild.cache":       cacheSchema,
		"imsbuild.signing":     signingSchema,
		"imsbuild.executor":    executorSchema,
		"variable":             variableSchema,
		"variable.validation":  validationSchema,
		"repository":           repositorySchema,
		"recipe":               recipeSchema,
		"image":                imageSchema,
		"image.squashfs":       squashfsSchema,
		"image.customize":      customizeSchema,
		"image.customize.file": fileSchema,
		"image.interactive":    interactiveSchema,
	}
	for kind := range publishAttrs {
		m["publish."+kind] = publishSchema(kind)
	}
	return m
}

// BlockDocs returns the reference of every block with a schema, sorted by
// ID, attributes in schema order with Required from the schema. Arguments
// without a doc entry come back with an empty Description (a test forbids
// that).
func BlockDocs() []BlockDoc {
	var out []BlockDoc
	for id, schema := range blockSchemas() {
		b := BlockDoc{ID: id, Header: blockHeaders[id]}
		for _, bs := range schema.Blocks {
			b.Blocks = append(b.Blocks, bs.Type)
		}
		docs := attrDocs[id]
		for _, as := range schema.Attributes {
			d := AttrDoc{Name: as.Name}
			if i := slices.IndexFunc(docs, func(d AttrDoc) bool { return d.Name == as.Name }); i >= 0 {
				d = docs[i]
			}
			d.Required = as.Required
			b.Attrs = append(b.Attrs, d)
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b BlockDoc) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// FunctionNames returns the names of the functions build files may call,
// sorted, for the functions reference page.
func FunctionNames() []string {
	return keys(functions(context.Background(), resolver{}, nil))
}
