"""``python -m testbed.service ...``: the same commands as ``testbed service``."""

from testbed.service.cli import service

if __name__ == "__main__":
    service(prog_name="python -m testbed.service")
