# Two commands on a fresh machine:  make demo  |  make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,parquet,postgres]"
	touch $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/visextract run examples/ --db sqlite:///visextract.db
	$(BIN)/visextract status --list --db sqlite:///visextract.db
	@echo
	@echo "Export (first record shown):  $(BIN)/visextract export --format jsonl --db sqlite:///visextract.db | head -n 1"
	@$(BIN)/visextract export --format jsonl --db sqlite:///visextract.db | head -n 1
	@echo
	@echo "See every record on its image, review and chat in the browser:  $(BIN)/visextract serve"

test: install
	.ci/ensure-chromium
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check visextract tests bench
	$(BIN)/ruff format --check visextract tests bench

bench: install
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) visextract.db visextract.db-wal visextract.db-shm .pytest_cache
