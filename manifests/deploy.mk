# Kubernetes targets, included by the top-level Makefile. Modes and the choice between them: manifests/README.md.
# The overlay decides the mode (its deploymentMode annotation); the targets mean the same in both:
#
#   make deploy                  apply the overlay; what it declares takes all traffic
#   make canary PERCENT=10       the overlay's model version/image takes 10%, the current one the rest
#   make promote                 the canary becomes the stable predictor (100%)
#   make rollback                the canary is removed: the stable predictor takes 100% again
#   make status                  what serves, at what share
#
# Standard mode (overlays/prod): the canary is an entry of spec.canary (KServe >= 0.20), a Deployment of its
# own with fixed replicas. Knative mode (OVERLAY=prod-serverless, dev): canaryTrafficPercent between revisions.
# Every target prints the command it runs; DRY_RUN=1 prints it without running it.

OVERLAY ?= prod
NAMESPACE ?= $(if $(filter dev,$(OVERLAY)),dcmms-ml-dev,dcmms-ml)
ISVC ?= predictive-maintenance
KUBECTL ?= kubectl
DOCKER ?= docker
# Field manager of our server-side applies: the fields deploy/canary set are owned by it, so that a later
# apply also removes what the overlay no longer declares.
FIELD_MANAGER ?= predictive-maintenance-deploy
DRY_RUN ?=
PERCENT ?=
# The name of the spec.canary entry (Standard mode): one canary at a time, so a fixed name, and
# `make canary` replaces the entry rather than adding a second one. KServe names its Deployment
# $(ISVC)-$(CANARY)-predictor.
CANARY ?= canary

DEPLOY_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
OVERLAY_DIR = $(DEPLOY_MK_DIR)/overlays/$(OVERLAY)
# Read from the rendered overlay on first use only, and once (the `$(eval ...)` memoises them).
rendered_field = $(shell $(KUBECTL) kustomize $(OVERLAY_DIR) 2>/dev/null | sed -n 's|^ *$(1): *||p' | head -n 1)
# The image the overlay deploys (so `make image` builds exactly that); override with IMAGE=repo/name:tag.
IMAGE ?= $(eval IMAGE := $(call rendered_field,image))$(IMAGE)
# What `docker build -t` can name: the image without its digest (prod pins repo/name:tag@sha256:...; a digest
# exists only once the image is pushed, and is then written into the overlay, see overlays/prod).
IMAGE_TAG = $(firstword $(subst @, ,$(IMAGE)))
# Standard or Knative (or the deprecated Serverless), as the overlay's InferenceService says.
MODE ?= $(eval MODE := $(call rendered_field,serving.kserve.io/deploymentMode))$(MODE)
standard = $(filter Standard,$(MODE))

# Knative mode: the only traffic setting KServe reads there is the share of the latest revision; the rest
# goes to the last revision that had 100%. One JSON6902 patch, used by render (canary/deploy) and by
# promote/rollback alike.
traffic_patch = [{"op":"add","path":"/spec/predictor/canaryTrafficPercent","value":$(1)}]

# Standard mode. The first op of each patch is a JSON-patch `test`: the API server refuses the whole patch
# when it fails, so nothing is half-applied to the wrong object.
is_standard = {"op":"test","path":"/metadata/annotations/serving.kserve.io~1deploymentMode","value":"Standard"}
has_canary = {"op":"test","path":"/spec/canary/0/predictor/name","value":"$(CANARY)"}
# canary: the entry carries only what a canary changes, the model version (env, whose [0] is
# PREDICTOR_MODEL_URI) and the image, both as the overlay renders them ($$env and $$image, filled in by the
# recipe); KServe builds the canary's pods from the stable predictor with these merged over it. modelFormat
# and runtime are copied from the live stable predictor (KServe wants a complete `model` on a canary). The
# CRD requires a container name on a canary's model (not on the stable one's, where the webhook forbids it):
# kserve-container, the name KServe gives the predictor container anyway.
# `add` on /spec/canary replaces the list: a second `make canary` updates the entry.
canary_patch = [$(is_standard),{"op":"add","path":"/spec/canary","value":[{"trafficPercent":$(PERCENT),"predictor":{"name":"$(CANARY)","model":{"name":"kserve-container","image":"'"$$image"'","env":'"$$env"'}}}]},{"op":"copy","from":"/spec/predictor/model/modelFormat","path":"/spec/canary/0/predictor/model/modelFormat"},{"op":"copy","from":"/spec/predictor/model/runtime","path":"/spec/canary/0/predictor/model/runtime"}]
# promote: the stable predictor takes the canary's model version and image (KServe rolls the stable
# Deployment to them), then the canary goes; its share returns to the stable predictor.
promote_patch = [$(is_standard),$(has_canary),{"op":"copy","from":"/spec/canary/0/predictor/model/image","path":"/spec/predictor/model/image"},{"op":"copy","from":"/spec/canary/0/predictor/model/env","path":"/spec/predictor/model/env"},{"op":"remove","path":"/spec/canary"}]
rollback_patch = [$(is_standard),$(has_canary),{"op":"remove","path":"/spec/canary"}]
# status: one line per predictor with its share (the stable one has what the canaries leave).
status_jsonpath = {.spec.predictor.model.image} {.spec.predictor.model.env[0].value}{"\n"}{range .spec.canary[*]}{.predictor.name} {.trafficPercent} {.predictor.model.image} {.predictor.model.env[0].value}{"\n"}{end}
status_table = awk 'NR == 1 { stable = $$0; next } { share += $$2; rows = rows sprintf("%-10s %4s%%  %s\n", $$1, $$2, $$3 " " $$4) } END { printf "%-10s %4s   %s\n", "PREDICTOR", "SHARE", "IMAGE MODEL"; printf "%-10s %4d%%  %s\n", "stable", 100 - share, stable; printf "%s", rows }'

KUBECTL_HELP = error: '$(KUBECTL)' not found. Install kubectl (https://kubernetes.io/docs/tasks/tools/) or pass KUBECTL=/path/to/kubectl.
# Shell snippets. $$CMD comes from the environment (target-specific `export CMD = ...`) or from the recipe,
# so its quotes reach the shell untouched: it is printed as is and, unless DRY_RUN=1, evaluated as is.
need_kubectl = command -v $(KUBECTL) >/dev/null 2>&1 || { echo "$(KUBECTL_HELP)" >&2; exit 127; }
need_overlay = test -d $(OVERLAY_DIR) || { echo "error: no overlay '$(OVERLAY)' (OVERLAY is one of: $(notdir $(wildcard $(DEPLOY_MK_DIR)/overlays/*)))" >&2; exit 2; }
# overlays/prod ships a placeholder digest (all zeros) until a release writes the pushed image's in: applied, its
# pods would never pull. deploy and canary refuse it, loudly (DRY_RUN=1 only warns: it deploys nothing).
PLACEHOLDER_DIGEST := sha256:0000000000000000000000000000000000000000000000000000000000000000
need_real_image = case "$(IMAGE)" in *@$(PLACEHOLDER_DIGEST)) \
	echo "error: $(OVERLAY_DIR) deploys $(IMAGE): a placeholder digest, no such image exists. Build and push the release (make image && docker push $(IMAGE_TAG)), then put the sha256 docker push prints in the overlay's images[].digest (see overlays/$(OVERLAY)/kustomization.yaml)" >&2; \
	[ "$(DRY_RUN)" = 1 ] || exit 2;; esac
run = echo "\$$ $$CMD"; if [ "$(DRY_RUN)" = 1 ]; then exit 0; fi; $(need_kubectl); set -o pipefail; eval "$$CMD"
check_percent = case "$(PERCENT)" in ''|*[!0-9]*|0?*|????*) false;; esac && [ "$(PERCENT)" -le 100 ] || { \
	echo "error: PERCENT must be a whole number from 0 to 100 (got '$(PERCENT)'), e.g. make canary PERCENT=10" >&2; exit 2; }
apply_rendered = $(MAKE) -s --no-print-directory render OVERLAY=$(OVERLAY) PERCENT=$(1) | \
	$(KUBECTL) apply --server-side --force-conflicts --field-manager=$(FIELD_MANAGER) -f -
apply_overlay = $(KUBECTL) kustomize $(OVERLAY_DIR) | \
	$(KUBECTL) apply --server-side --force-conflicts --field-manager=$(FIELD_MANAGER) -f -
patch_isvc = $(KUBECTL) patch inferenceservice $(ISVC) -n $(NAMESPACE) --type json -p '$(1)'
# The rendered InferenceService's model image and env as JSON, offline (`patch --local` with an empty
# patch only prints; the other objects of the overlay have no such field and print nothing).
read_model = rendered=$$(mktemp); trap 'rm -f "$$rendered"' EXIT; \
	$(KUBECTL) kustomize $(OVERLAY_DIR) > "$$rendered" || exit 1; \
	model_field() { $(KUBECTL) patch --local -f "$$rendered" --type merge -p '{}' -o jsonpath="{.spec.predictor.model.$$1}" | tr -d '\n'; }; \
	image=$$(model_field image); env=$$(model_field env); \
	case "$$image$$env" in *"'"*) echo "error: a quote in the overlay's image or env would break the patch" >&2; exit 2;; esac; \
	[ -n "$$image" ] && [ -n "$$env" ] || { echo "error: no spec.predictor.model image/env in $(OVERLAY_DIR)" >&2; exit 2; }

.PHONY: deploy canary promote rollback status image render

deploy: export CMD = $(if $(standard),$(apply_overlay),$(call apply_rendered,100))
deploy: ## apply the overlay (OVERLAY=prod|prod-serverless|dev); what it declares takes all traffic
	@$(need_overlay); $(need_real_image); $(run)

canary: export CMD = $(if $(standard),,$(call apply_rendered,$(PERCENT)))
canary: ## PERCENT=N: the overlay's model version/image takes N% (0-100) beside the current one
	@$(check_percent); $(need_overlay); $(need_real_image); \
	if [ -n "$(standard)" ]; then \
	  $(need_kubectl); $(read_model); \
	  patch='$(canary_patch)'; CMD="$(KUBECTL) patch inferenceservice $(ISVC) -n $(NAMESPACE) --type json -p '$$patch'"; \
	fi; \
	$(run)

promote: export CMD = $(if $(standard),$(call patch_isvc,$(promote_patch)),$(call patch_isvc,$(call traffic_patch,100)))
promote: ## the canary becomes the stable predictor and takes 100% (Knative: the latest revision takes 100%)
	@$(need_overlay); $(run)

rollback: export CMD = $(if $(standard),$(call patch_isvc,$(rollback_patch)),$(call patch_isvc,$(call traffic_patch,0)))
rollback: ## the canary goes, the stable predictor takes 100% (Knative: the last promoted revision)
	@$(need_overlay); $(run)

status_standard = $(KUBECTL) get inferenceservice $(ISVC) -n $(NAMESPACE) -o jsonpath='$(status_jsonpath)' | $(status_table) && \
	$(KUBECTL) get deployments,hpa -n $(NAMESPACE) -l serving.kserve.io/inferenceservice=$(ISVC)
status_knative = $(KUBECTL) get inferenceservice $(ISVC) -n $(NAMESPACE) && \
	$(KUBECTL) get revisions -n $(NAMESPACE) -l serving.kserve.io/inferenceservice=$(ISVC)
status: export CMD = $(if $(standard),$(status_standard),$(status_knative))
status: ## what is serving: each predictor (or revision) with its share of the traffic, readiness, scaling
	@$(need_overlay); $(run)

image: export CMD = $(DOCKER) build -t $(IMAGE_TAG) .
image: ## build the container image the overlay deploys (IMAGE=repo/name:tag to override; needs Docker)
	@test -n "$(IMAGE)" || { echo "error: could not read the image from $(OVERLAY_DIR); pass IMAGE=repo/name:tag" >&2; exit 2; }
	@echo "\$$ $$CMD"; if [ "$(DRY_RUN)" = 1 ]; then exit 0; fi; \
	command -v $(DOCKER) >/dev/null 2>&1 || { echo "error: '$(DOCKER)' not found: building the image needs a container engine (Docker, or DOCKER=podman)" >&2; exit 127; }; \
	eval "$$CMD" && echo "built $(IMAGE_TAG); push it with: $(DOCKER) push $(IMAGE_TAG)" && \
	echo "then pin it: put the sha256 digest the push prints in \`digest:\` of $(OVERLAY_DIR)/kustomization.yaml"

# Knative mode: what deploy (PERCENT=100) and canary (PERCENT=N) apply: the overlay, plus the traffic patch
# on the InferenceService in the same object, so that a new revision is born at its share instead of at 100%.
# Needs only kubectl (its built-in kustomize), no cluster. Without PERCENT (and in Standard mode, where the
# split is not part of the overlay): the overlay as is.
render: export PATCH = $(call traffic_patch,$(PERCENT))
render: ## [PERCENT=N] print the manifests deploy/canary would apply (offline: kubectl's kustomize only)
	@$(need_overlay); $(need_kubectl); \
	if [ -z "$(PERCENT)" ] || [ -n "$(standard)" ]; then exec $(KUBECTL) kustomize $(OVERLAY_DIR); fi; \
	$(check_percent); \
	dir=$$(cd "$$(mktemp -d)" && pwd -P); trap 'rm -rf "$$dir"' EXIT; \
	overlay=$$(cd $(OVERLAY_DIR) && pwd -P); \
	up=$$(echo "$$dir" | sed 's|[^/][^/]*|..|g; s|^/||'); \
	{ echo "# $(OVERLAY_DIR) with canaryTrafficPercent=$(PERCENT) (kustomize wants a relative path here)"; \
	  echo "resources: [\"$$up$$overlay\"]"; \
	  echo "patches:"; \
	  echo "  - target: {group: serving.kserve.io, kind: InferenceService, name: $(ISVC)}"; \
	  echo "    patch: '$$PATCH'"; \
	} > "$$dir/kustomization.yaml"; \
	$(KUBECTL) kustomize "$$dir"
