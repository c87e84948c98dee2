"""Fuzz targets for fastws (see targets.py), their libFuzzer/atheris runner (run_fuzzer.py) and
the bounded session that the normal test suite runs (test_fuzz_session.py)."""
