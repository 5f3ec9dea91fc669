# One entry point per task, for people and CI alike.
#   make up         install what is missing, run everything (Ctrl-C stops it)
#   make test       install what is missing, run the whole suite (the CI entry), then its SASL leg
#   make test-sasl  the SASL leg alone: a subset over TLS + SASL/SCRAM against a broker of its own
#   make check      the fast tier for the inner loop: no service started, under a minute
#   make chaos      install what is missing, run the fault suite (tests/chaos, ~7 min, as root)
#   make test-cluster  the multi-node test: 3 Kafka brokers, several instances of every component
#   make bench      install what is missing, run the benchmarks (JSON under var/bench/results)
#   make lint       ruff + mypy
#   make audit      pinned dependencies against vulnerability lists (infra/audit, offline)
#   make stop       stop what `make up` left running (Kafka, PostgreSQL, mosquitto)
#   make test-stop  stop the suite's own Kafka and PostgreSQL (under var/test, var/test-sasl)
SHELL := /bin/bash
VENV := .venv/bin
# the suite runs its own Kafka/PostgreSQL under var/test on ports apart from `make up`'s
TEST_ENV := ECPDS_VAR=var/test ECPDS_KAFKA_PORT=29092 ECPDS_PG_PORT=25433 ECPDS_MQTT_PORT=21883 ECPDS_MONITOR_PORT=28080
# the SASL leg: the tests of every kind of Kafka client (publisher, feeds, stage consumers, faust,
# admin) and the end-to-end chain (not its protocol matrix: the same clients once per protocol),
# over SASL_SSL against its own broker under var/test-sasl
SASL_ENV := ECPDS_VAR=var/test-sasl ECPDS_KAFKA_PORT=29292 ECPDS_PG_PORT=25533 ECPDS_MQTT_PORT=21983 ECPDS_MONITOR_PORT=28180 ECPDS_KAFKA_SECURITY=sasl_ssl
SASL_TESTS := tests/bus/test_kafka_access.py tests/bus/test_kafka.py tests/bus/test_feeds.py tests/bus/test_stage.py tests/bus/test_faust.py tests/e2e/test_dissemination.py tests/e2e/test_host_errors.py
# the multi-node test: its 3 brokers on CLUSTER_ENV's Kafka port + 100 to + 105 and a PostgreSQL
# (a free port), both under var/test-cluster/cluster-run
CLUSTER_ENV := ECPDS_VAR=var/test-cluster ECPDS_KAFKA_PORT=29392 ECPDS_PG_PORT=25633 ECPDS_MQTT_PORT=22083 ECPDS_MONITOR_PORT=28280

.PHONY: install up test test-sasl check chaos test-cluster bench lint audit stop test-stop clean

install:
	@bash infra/install.sh

up: install
	$(VENV)/ecpds up

# both legs run even when the first fails; the target fails if either did
test: install
	@status=0; \
	$(TEST_ENV) $(VENV)/pytest -q -p no:cacheprovider $(PYTEST_ARGS) || status=1; \
	echo "make test: the SASL leg ($(SASL_TESTS))"; \
	$(SASL_ENV) $(VENV)/pytest -q -p no:cacheprovider $(SASL_TESTS) || status=1; \
	exit $$status

test-sasl: install
	$(SASL_ENV) $(VENV)/pytest -q -p no:cacheprovider $(SASL_TESTS) $(PYTEST_ARGS)

# tests that need a service are marked "services" by tests/conftest.py; the rest need none
check: $(VENV)/pytest
	$(TEST_ENV) $(VENV)/pytest -q -p no:cacheprovider -m "not services" $(PYTEST_ARGS)

# the fault suite: its own Kafka and PostgreSQL under var/chaos (free ports), results in
# var/chaos/results.json; `make test` skips it (it runs only when -m selects "chaos")
chaos: install
	$(TEST_ENV) $(VENV)/pytest -q -p no:cacheprovider -s -m chaos tests/chaos $(PYTEST_ARGS)

# the multi-node test (tests/cluster, < 8 min): one broker, then one instance of each component,
# SIGKILLed under load; results in var/test-cluster/cluster-results.json; `make test` skips it
test-cluster: install
	$(CLUSTER_ENV) $(VENV)/pytest -q -p no:cacheprovider -s -m cluster tests/cluster $(PYTEST_ARGS)

$(VENV)/pytest:
	@bash infra/install.sh

bench: install
	@bash bench/run.sh

lint: install
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

audit: install
	$(VENV)/python infra/audit/audit.py

# each script is stopped even if the one before failed
stop:
	-@bash infra/kafka/kafka.sh stop
	-@bash infra/pg/pg.sh stop
	-@if bash infra/mqtt/mosquitto.sh status >/dev/null 2>&1; then bash infra/mqtt/mosquitto.sh stop; fi

test-stop:
	-@$(TEST_ENV) bash infra/kafka/kafka.sh stop
	-@$(TEST_ENV) bash infra/pg/pg.sh stop
	-@$(SASL_ENV) bash infra/kafka/kafka.sh stop

clean: stop test-stop
	rm -rf var/test var/test-sasl var/kafka var/pg var/store var/log
