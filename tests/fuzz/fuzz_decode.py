"""Coverage-guided fuzzing of the decoding contract with atheris (libFuzzer for Python).

    PYTHONPATH=. python tests/fuzz/fuzz_decode.py CORPUS_DIR -max_total_time=60 -rss_limit_mb=2048

The contract and the Python parts of pydicom and Pillow are instrumented; the C and Rust decoders
are exercised but not instrumented. libFuzzer writes a crashing input as ``crash-*`` (an exception
other than InputError), ``timeout-*`` (a hang) or ``oom-*`` (past -rss_limit_mb: a decompression
bomb that got past the pixel budget). ``test_fuzz_decode.py`` runs this in CI and keeps what it finds.
"""

import sys

import atheris

with atheris.instrument_imports(include=["service.contract", "pydicom", "PIL"]):
    from tests.fuzz.target import check_decode


def main() -> None:
    atheris.Setup(sys.argv, check_decode)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
