"""Luigi's contrib targets that asyncflow backs: S3 (:mod:`.s3`) and GCS (:mod:`.gcs`)."""
