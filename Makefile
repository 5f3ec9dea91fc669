# One entry point per task, for people and CI alike.
#   make up     install what is missing, run everything (Ctrl-C stops it)
#   make test   install what is missing, run the whole suite
#   make bench  install what is missing, run the benchmarks (JSON under var/bench/results)
#   make lint   ruff + mypy
SHELL := /bin/bash
VENV := .venv/bin
# the suite runs its own Kafka/PostgreSQL under var/test on ports apart from `make up`'s
TEST_ENV := ECPDS_VAR=var/test ECPDS_KAFKA_PORT=29092 ECPDS_PG_PORT=25433 ECPDS_MQTT_PORT=21883 ECPDS_MONITOR_PORT=28080

.PHONY: install up test bench lint stop clean

install:
	@bash infra/install.sh

up: install
	$(VENV)/ecpds up

test: install
	$(TEST_ENV) $(VENV)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: install
	@bash bench/run.sh

lint: install
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

stop:
	-@bash infra/kafka/kafka.sh stop; bash infra/pg/pg.sh stop
	-@$(TEST_ENV) bash infra/kafka/kafka.sh stop; $(TEST_ENV) bash infra/pg/pg.sh stop

clean: stop
	rm -rf var/test var/kafka var/pg var/store var/log
