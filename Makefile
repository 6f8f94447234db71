# Entry points for operators and developers. Every target bootstraps what it needs
# (the .venv from requirements/toolchain.txt; the Docker engine and simulator images
# where a target runs the simulator), so each works on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help venv demo test lint sanity unit molecule lock clean bench faults

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

venv: ## Create/refresh .venv from the locked toolchain
	@tools/venv.sh

demo: venv ## Run the main job on the built-in simulator
	@tools/demo.sh

test: venv ## Run every test: lint, sanity, unit, simulator and Molecule
	@tools/test.sh

lint: venv ## ruff, yamllint, ansible-lint (production), changelog lint
	@tools/test.sh lint

sanity: venv ## ansible-test sanity on the built collection
	@tools/sanity.sh

unit: venv ## Unit tests only (no Docker)
	@.venv/bin/pytest -m "not docker"

faults: venv ## The fault matrix only; writes docs/faults.md from the run (needs Docker)
	@tools/docker-engine.sh && sim/ascend-sim build && ASCEND_FAULTS_DOC=$(CURDIR)/docs/faults.md .venv/bin/pytest -m fault

bench: venv ## Proxy overhead benchmark vs direct-to-decode (~5 min; ARGS=--quick for ~2 min)
	@.venv/bin/python benchmarks/proxy_overhead.py $(ARGS)

lock: ## Regenerate requirements/toolchain.txt from toolchain.in
	@tools/lock.sh

clean: ## Remove build output (keeps .venv and the image cache)
	rm -rf .build tests/output .pytest_cache .ruff_cache

molecule: venv ## Molecule scenarios only (needs Docker; builds the simulator images)
	@tools/docker-engine.sh && sim/ascend-sim build && for s in molecule/*/; do .venv/bin/molecule test -s $$(basename $$s) || exit 1; done
