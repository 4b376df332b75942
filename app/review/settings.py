"""Tool Review: submission bounds, the auto-approval threshold, reviewers, signing and its rate-limit groups."""

from app.core.fields import Field

SECTIONS = {
    "review": {
        "max_source_bytes": Field("int", 1024 * 1024, minimum=1, maximum=16 * 1024 * 1024,
            help="Largest source code (or tool schema, as JSON) a submission may carry."),
        "auto_approve_below": Field("int", 30, minimum=0, maximum=101,
            help="Risk score under which a tool with no high or critical finding is approved without a person."),
        "high_priority_from": Field("int", 70, minimum=0, maximum=100,
            help="Risk score from which a queued review is high priority (any critical finding makes it so too)."),
        "reviewers": Field("list", [],
            help="Reviewers queued reviews are assigned to, in turn (e-mail addresses or names)."),
        "signing": Field("str", "rsa", choices=("rsa", "schemapin"),
            help="`rsa`: RSA-SHA256 with a certificate chain; `schemapin`: also a SchemaPin ECDSA P-256 signature."),
        "key_dir": Field("str", "", hot=False,
            help="Directory of the signing keys and certificates; empty: `signing` under the data directory."),
        "analysis_timeout_secs": Field("float", 60.0, minimum=1, maximum=3600,
            help="Wall-clock bound of one analysis (it runs in a subprocess)."),
        "analysis_cpu_secs": Field("int", 30, minimum=1, maximum=3600,
            help="CPU seconds one analysis may use."),
        "analysis_memory_mb": Field("int", 512, minimum=64, maximum=16384,
            help="Memory one analysis may allocate, in MiB."),
        "max_concurrency": Field("int", 2, minimum=1, maximum=64,
            help="Analyses and signings running at once per worker."),
        "poll_interval_secs": Field("float", 0.25, minimum=0.01, maximum=60,
            help="How often each worker looks for reviews to analyse or sign."),
    },
    "rate_limits": {
        "review_submit": Field("limit", "10/min",
            help="Limit of tool review submissions, decisions and signing requests, per token."),
        "review_query": Field("limit", "100/min", help="Limit of tool review queries, per token."),
        "review_download": Field("limit", "20/min", help="Limit of signed package downloads, per token."),
    },
}
