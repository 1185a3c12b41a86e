"""Local AWS services for the local stack: Rekognition Custom Labels, SageMaker/A2I and the review portal.

`LocalServices(s3_endpoint_url, region, data_dir, events_endpoint_url).start()` serves them on one
127.0.0.1 port; boto3 clients reach them through `AWS_ENDPOINT_URL_<SERVICE>` (see `endpoint_env()`).
"""

from labelloop_local.emulators.server import LocalServices

__all__ = ["LocalServices"]
