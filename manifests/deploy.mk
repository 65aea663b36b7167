# Kubernetes targets, included by the top-level Makefile. The mode decision behind them: manifests/README.md.
#
#   make deploy                  apply the overlay; the new revision takes all traffic
#   make canary PERCENT=10       apply the overlay; the new revision takes 10%, the last promoted one 90%
#   make promote                 the latest revision takes 100%
#   make rollback                the previously promoted revision takes 100% again
#   make status                  which revisions serve, at what split
#
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

DEPLOY_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
OVERLAY_DIR = $(DEPLOY_MK_DIR)/overlays/$(OVERLAY)
# The image the overlay deploys (so `make image` builds exactly that); override with IMAGE=repo/name:tag.
# (Read on first use only, and once: the `$(eval ...)` memoises it.)
IMAGE ?= $(eval IMAGE := $(shell $(KUBECTL) kustomize $(OVERLAY_DIR) 2>/dev/null | sed -n 's/^ *image: *//p' | head -n 1))$(IMAGE)

# The only traffic setting KServe reads in Serverless mode: the share of the latest revision; the rest
# goes to the last revision that had 100%. One JSON6902 patch, used by render (canary/deploy) and by
# promote/rollback alike.
traffic_patch = [{"op":"add","path":"/spec/predictor/canaryTrafficPercent","value":$(1)}]

KUBECTL_HELP = error: '$(KUBECTL)' not found. Install kubectl (https://kubernetes.io/docs/tasks/tools/) or pass KUBECTL=/path/to/kubectl.
# Shell snippets. $$CMD comes from the environment (target-specific `export CMD = ...`), so its quotes reach
# the shell untouched: it is printed as is and, unless DRY_RUN=1, evaluated as is.
need_kubectl = command -v $(KUBECTL) >/dev/null 2>&1 || { echo "$(KUBECTL_HELP)" >&2; exit 127; }
need_overlay = test -d $(OVERLAY_DIR) || { echo "error: no overlay '$(OVERLAY)' (OVERLAY is one of: $(notdir $(wildcard $(DEPLOY_MK_DIR)/overlays/*)))" >&2; exit 2; }
run = echo "\$$ $$CMD"; if [ "$(DRY_RUN)" = 1 ]; then exit 0; fi; $(need_kubectl); set -o pipefail; eval "$$CMD"
check_percent = case "$(PERCENT)" in ''|*[!0-9]*|0?*|????*) false;; esac && [ "$(PERCENT)" -le 100 ] || { \
	echo "error: PERCENT must be a whole number from 0 to 100 (got '$(PERCENT)'), e.g. make canary PERCENT=10" >&2; exit 2; }
apply_rendered = $(MAKE) -s --no-print-directory render OVERLAY=$(OVERLAY) PERCENT=$(1) | \
	$(KUBECTL) apply --server-side --force-conflicts --field-manager=$(FIELD_MANAGER) -f -

.PHONY: deploy canary promote rollback status image render

deploy: export CMD = $(call apply_rendered,100)
deploy: ## apply the overlay (OVERLAY=prod|dev) to the cluster; the new revision takes all traffic
	@$(need_overlay); $(run)

canary: export CMD = $(call apply_rendered,$(PERCENT))
canary: ## PERCENT=N: apply the overlay as a canary: the new revision takes N% (0-100), the last promoted the rest
	@$(check_percent); $(need_overlay); $(run)

promote: export CMD = $(KUBECTL) patch inferenceservice $(ISVC) -n $(NAMESPACE) --type json -p '$(call traffic_patch,100)'
promote: ## the latest revision takes 100% of the traffic (it becomes the one rollback returns to next time)
	@$(run)

rollback: export CMD = $(KUBECTL) patch inferenceservice $(ISVC) -n $(NAMESPACE) --type json -p '$(call traffic_patch,0)'
rollback: ## the previously promoted revision takes 100% again; the latest stays deployed at 0%
	@$(run)

status: export CMD = $(KUBECTL) get inferenceservice $(ISVC) -n $(NAMESPACE) && $(KUBECTL) get revisions -n $(NAMESPACE) -l serving.kserve.io/inferenceservice=$(ISVC)
status: ## what is serving: URL, readiness, previous/latest revision and their traffic split
	@$(run)

image: export CMD = $(DOCKER) build -t $(IMAGE) .
image: ## build the container image the overlay deploys (IMAGE=repo/name:tag to override; needs Docker)
	@test -n "$(IMAGE)" || { echo "error: could not read the image from $(OVERLAY_DIR); pass IMAGE=repo/name:tag" >&2; exit 2; }
	@echo "\$$ $$CMD"; if [ "$(DRY_RUN)" = 1 ]; then exit 0; fi; \
	command -v $(DOCKER) >/dev/null 2>&1 || { echo "error: '$(DOCKER)' not found: building the image needs a container engine (Docker, or DOCKER=podman)" >&2; exit 127; }; \
	eval "$$CMD" && echo "built $(IMAGE); push it with: $(DOCKER) push $(IMAGE)"

# What deploy (PERCENT=100) and canary (PERCENT=N) apply: the overlay, plus the traffic patch on the
# InferenceService in the same object, so that a new revision is born at its share instead of at 100%.
# Needs only kubectl (its built-in kustomize), no cluster. Without PERCENT: the overlay as is.
render: export PATCH = $(call traffic_patch,$(PERCENT))
render: ## [PERCENT=N] print the manifests deploy/canary would apply (offline: kubectl's kustomize only)
	@$(need_overlay); $(need_kubectl); \
	if [ -z "$(PERCENT)" ]; then exec $(KUBECTL) kustomize $(OVERLAY_DIR); fi; \
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
