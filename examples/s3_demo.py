"""The demo pipeline against a local S3 server (moto), started here on 127.0.0.1.

    make demo-s3

Runs the pipeline twice with its data in ``s3://asyncflow-demo/data``: the first
run does the work, the second finds everything complete. Needs the dev extras
(``moto``), which ``make demo-s3`` installs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import date
from pathlib import Path

BUCKET = "asyncflow-demo"


def start_s3() -> tuple[object, str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


async def create_bucket(url: str) -> None:
    from aiobotocore.session import get_session

    async with get_session().create_client("s3", endpoint_url=url) as s3:
        await s3.create_bucket(Bucket=BUCKET)


def main() -> None:
    server, url = start_s3()
    # What a user would set to point asyncflow (and any AWS tool) at this server.
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    sys.path.insert(0, str(Path(__file__).parent))
    from etl import Report

    import asyncflow
    from asyncflow.logging import configure_logging

    configure_logging("console", "WARNING")

    try:
        asyncio.run(create_bucket(url))
        print(f"S3 server on {url}, bucket {BUCKET}")
        for attempt in ("first", "second"):
            result = asyncflow.build(
                Report(date=date(2026, 11, 23), data_dir=f"s3://{BUCKET}/data"), journal=None
            )
            print(f"--- {attempt} run ---\n{result.summary()}")
            if not result.ok:
                sys.exit(1)
    finally:
        server.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
