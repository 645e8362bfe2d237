.PHONY: setup demo test benchmark crd
setup:
	@scripts/bootstrap

demo: setup
	.venv/bin/plateau run examples/local-digits.yaml

test: setup
	PATH="$(CURDIR)/.venv/bin:$(CURDIR)/.tools/bin:$$PATH" .venv/bin/python -m pytest -q -p no:cacheprovider

crd: setup
	.venv/bin/plateau crd
