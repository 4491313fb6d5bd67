//! Built-in provider and PII rules: `(name, regex, group to redact)`.
//!
//! The regexes are our own, written after reading three public catalogues (gitleaks
//! b58d3f1, Nosey Parker 2e6e7f3, trufflehog's detector list); none is copied: most drop the
//! catalogues' keyword context where a prefix is distinctive, and use a word boundary or a
//! consumed delimiter (plus a capture group) instead of look-arounds, which `regex` has not.
//! Where each rule's format came from (catalogue rule ids in brackets):
//!
//! - gitleaks (`config/gitleaks.toml`, github.com/gitleaks/gitleaks):
//!   `aws_access_key` [aws-access-token], `github_token` [github-pat, github-fine-grained-pat,
//!   github-oauth, github-app-token, github-refresh-token], `gitlab_token` [gitlab-pat,
//!   gitlab-runner-authentication-token, gitlab-rrt, gitlab-deploy-token, gitlab-ptt,
//!   gitlab-feed-token, gitlab-incoming-mail-token, gitlab-kubernetes-agent-token],
//!   `slack_token` [slack-bot-token, slack-user-token, slack-app-token,
//!   slack-config-access-token], `slack_webhook` [slack-webhook-url], `stripe_key`
//!   [stripe-access-token], `anthropic_key` [anthropic-api-key, anthropic-admin-api-key],
//!   `openai_key` [openai-api-key], `huggingface_token` [huggingface-access-token,
//!   huggingface-organization-api-token], `google_api_key` [gcp-api-key], `npm_token`
//!   [npm-access-token], `pypi_token` [pypi-upload-token], `mailchimp_key`
//!   [mailchimp-api-key], `rubygems_token` [rubygems-api-token], `clojars_token`
//!   [clojars-api-token], `artifactory_key` [artifactory-api-key,
//!   artifactory-reference-token], `twilio_key` [twilio-api-key; the `AC` account SID is
//!   ours], `sendgrid_key` [sendgrid-api-token], `mailgun_key` [mailgun-private-api-token,
//!   mailgun-pub-key], `sendinblue_key` [sendinblue-api-token], `telegram_bot_token`
//!   [telegram-bot-api-token], `shopify_token` [shopify-access-token,
//!   shopify-custom-access-token, shopify-private-app-access-token, shopify-shared-secret],
//!   `square_token` [square-access-token], `flutterwave_key` [flutterwave-secret-key,
//!   flutterwave-public-key], `easypost_key` [easypost-api-token, easypost-test-api-token],
//!   `facebook_token` [facebook-page-access-token], `digitalocean_token` [digitalocean-pat,
//!   digitalocean-access-token, digitalocean-refresh-token], `doppler_token`
//!   [doppler-api-token], `vault_token` [vault-service-token, vault-batch-token],
//!   `databricks_token` [databricks-api-token], `heroku_key` [heroku-api-key,
//!   heroku-api-key-v2], `terraform_token` [hashicorp-tf-api-token], `pulumi_token`
//!   [pulumi-api-token], `planetscale_token` [planetscale-api-token, planetscale-password,
//!   planetscale-oauth-token], `grafana_token` [grafana-api-key, grafana-cloud-api-token,
//!   grafana-service-account-token], `flyio_token` [flyio-access-token], `alibaba_key`
//!   [alibaba-access-key-id], `atlassian_token` [atlassian-api-token], `dropbox_token`
//!   [dropbox-short-lived-api-token, dropbox-long-lived-api-token], `linear_key`
//!   [linear-api-key], `postman_key` [postman-api-token], `notion_token`
//!   [notion-api-token], `sentry_token` [sentry-org-token, sentry-user-token],
//!   `newrelic_key` [new-relic-user-api-key, new-relic-insert-key], `dynatrace_token`
//!   [dynatrace-api-token], `onepassword_token` [1password-service-account-token],
//!   `adobe_secret` [adobe-client-secret], `age_secret_key` [age-secret-key], `jwt` [jwt],
//!   `curl_user` [curl-auth-user], and the PEM/PGP block markers in `mod.rs` [private-key,
//!   whose `( BLOCK)?` takes PGP's `PRIVATE KEY BLOCK`].
//! - Nosey Parker (`crates/noseyparker/data/default/builtin/rules/*.yml`,
//!   github.com/praetorian-inc/noseyparker): `url_password` [np.postgres.1, np.mongodb.1],
//!   `authorization_header` [np.http.1 and the `Authorization: Bearer` examples of
//!   np.blynk / np.particleio], `google_oauth` [np.google.2 `GOCSPX-`, np.google.4
//!   `ya29.`], `nuget_key` [np.nuget.1], `dockerhub_token` [np.dockerhub.1],
//!   `kubernetes_bootstrap_token` [np.kubernetes.1], `sourcegraph_token`
//!   [np.sourcegraph.1; its 64-char form: np.segment.1], `atlassian_token`'s `ATBB`
//!   [np.bitbucket.1], and the unsigned-JWT branch of `jwt` (ours, after np.jwt.1).
//! - trufflehog (`pkg/detectors/*`, github.com/trufflesecurity/trufflehog):
//!   `aws_secret_key` [aws: a 40-char secret next to an access key id or the
//!   `aws_secret_access_key` name], `discord_token` [discordbottoken], `discord_webhook`
//!   [discordwebhook], `azure_storage_key` [azure_storage: `AccountKey=` in a connection
//!   string], `azure_sas` [azuresastoken: the `sig=` of a SAS URL], `gcp_private_key_id` [gcp: the service
//!   account JSON], `url_password` [uri], `bearer_token` [the `Bearer` header most detectors
//!   verify with].
//! - Ours: `figma_token` (Figma's documented `figd_` prefix), `email`, `phone` (E.164 and
//!   international with separators; North American `(415) 555-0132`, `415-555-0132`,
//!   `415.555.0132`, `1-800-555-0199`), and in `mod.rs` card numbers (Luhn) and IBANs
//!   (mod 97).
//!
//! Most patterns start with a literal (or a few), which the regexes' own literal prefilters
//! search for first; none nests unbounded repetitions.

/// `(name, regex, group to redact)`, most specific first: the first rule to claim a char
/// names its redaction (`filter.rs` keeps the group of the first match).
pub const PROVIDERS: &[(&str, &str, usize)] = &[
    // ---- AWS
    (
        "aws_access_key",
        r"(?-u:\b)(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[0-9A-Z]{16}",
        0,
    ),
    (
        // After the key id (`AKIA… wJalr…`, CSV `AKIA…,wJalr…`) or the usual names.
        "aws_secret_key",
        r"(?:(?-u:\b)(?:A3T[A-Z0-9]|AKIA|ASIA)[0-9A-Z]{16}[\s,;:|='\x22]{1,4}|(?i:aws|amazon)[A-Za-z0-9_.\x22' -]{0,24}(?i:secret|sk)[A-Za-z0-9_.\x22' -]{0,24}[\s:=>\x22']{1,5})([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)",
        1,
    ),
    // ---- GitHub
    (
        "github_token",
        r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9_]{36,255}|github_pat_[A-Za-z0-9_]{22,255})",
        0,
    ),
    // ---- GitLab
    (
        "gitlab_token",
        r"(?-u:\b)(?:glpat|glrt|gldt|glft|glsoat|glcbt|glimt|glagent|gloas)-[A-Za-z0-9_-]{20,}|(?-u:\b)glptt-[0-9a-f]{40}|(?-u:\b)GR1348941[A-Za-z0-9_-]{20,}",
        0,
    ),
    // ---- Slack
    (
        "slack_webhook",
        r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_]+/[A-Za-z0-9_]+/[A-Za-z0-9_]+",
        0,
    ),
    (
        "slack_token",
        r"(?-u:\b)(?:xox[abposre]-[A-Za-z0-9-]{10,}|xoxe\.xox[bp]-[A-Za-z0-9-]{10,}|xapp-[0-9]+-[A-Za-z0-9-]{10,})",
        0,
    ),
    // ---- Stripe
    (
        "stripe_key",
        r"(?-u:\b)(?:(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{24,})",
        0,
    ),
    // ---- AI providers (Anthropic before OpenAI: `sk-ant-` also reads as `sk-`)
    (
        "anthropic_key",
        r"(?-u:\b)sk-ant-(?:api|admin|sid)[0-9]{2}-[A-Za-z0-9_-]{20,}",
        0,
    ),
    (
        "openai_key",
        r"(?-u:\b)sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
        0,
    ),
    (
        "huggingface_token",
        r"(?-u:\b)(?:hf_[A-Za-z0-9]{30,}|api_org_[A-Za-z0-9]{30,})",
        0,
    ),
    // ---- Google
    ("google_api_key", r"(?-u:\b)AIza[0-9A-Za-z_-]{35}", 0),
    (
        "google_oauth",
        r"(?-u:\b)(?:GOCSPX-[A-Za-z0-9_-]{28}|ya29\.[0-9A-Za-z_-]{20,})",
        0,
    ),
    (
        "gcp_private_key_id",
        r#"\x22private_key_id\x22\s*:\s*\x22([0-9a-f]{40})\x22?"#,
        1,
    ),
    // ---- package registries
    ("npm_token", r"(?-u:\b)npm_[A-Za-z0-9]{36}", 0),
    (
        "pypi_token",
        r"(?-u:\b)pypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{40,}",
        0,
    ),
    ("rubygems_token", r"(?-u:\b)rubygems_[a-f0-9]{48}", 0),
    ("nuget_key", r"(?-u:\b)oy2[a-z0-9]{43}", 0),
    ("clojars_token", r"(?-u:\b)CLOJARS_[a-z0-9]{60}", 0),
    ("dockerhub_token", r"(?-u:\b)dckr_pat_[A-Za-z0-9_-]{27,}", 0),
    (
        "artifactory_key",
        r"(?-u:\b)(?:AKCp[A-Za-z0-9]{69}|cmVmdGtu[A-Za-z0-9]{56})",
        0,
    ),
    // ---- messaging and mail
    ("twilio_key", r"(?-u:\b)(?:SK|AC)[0-9a-fA-F]{32}(?-u:\b)", 0),
    (
        "sendgrid_key",
        r"(?-u:\b)SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}",
        0,
    ),
    (
        "mailgun_key",
        r"(?-u:\b)(?:key-[0-9a-zA-Z]{32}|pubkey-[0-9a-f]{32})(?-u:\b)",
        0,
    ),
    (
        "sendinblue_key",
        r"(?-u:\b)xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}",
        0,
    ),
    (
        "mailchimp_key",
        r"(?-u:\b)[0-9a-f]{32}-us[0-9]{1,2}(?-u:\b)",
        0,
    ),
    (
        "discord_token",
        r"(?-u:\b)[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}",
        0,
    ),
    (
        "discord_webhook",
        r"https?://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,68}",
        0,
    ),
    (
        "telegram_bot_token",
        r"(?:/bot|(?-u:\b))([0-9]{8,10}:(?:AA[A-Za-z0-9_-]{30,36}|[A-Za-z0-9_-]{35}))(?:[^A-Za-z0-9_-]|$)",
        1,
    ),
    // ---- commerce
    (
        "shopify_token",
        r"(?-u:\b)shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
        0,
    ),
    (
        "square_token",
        r"(?-u:\b)(?:sq0atp-[0-9A-Za-z_-]{22}|sq0csp-[0-9A-Za-z_-]{43}|EAAA[A-Za-z0-9_-]{60})",
        0,
    ),
    (
        "flutterwave_key",
        r"(?-u:\b)FLW(?:SECK|PUBK)(?:_TEST)?-[a-f0-9]{32}-X",
        0,
    ),
    ("easypost_key", r"(?-u:\b)E[ZS]AK[A-Za-z0-9]{54,}", 0),
    ("facebook_token", r"(?-u:\b)EAA[MC][A-Za-z0-9]{100,}", 0),
    // ---- cloud and infrastructure
    ("digitalocean_token", r"(?-u:\b)do[opr]_v1_[a-f0-9]{64}", 0),
    (
        "doppler_token",
        r"(?-u:\b)dp\.(?:pt|st|sa|ct|scim|audit)\.(?:[a-z0-9_-]{1,30}\.)?[A-Za-z0-9]{40,44}",
        0,
    ),
    (
        "vault_token",
        r"(?-u:\b)(?:hvs|hvb|hvr)\.[A-Za-z0-9_-]{24,}",
        0,
    ),
    (
        "databricks_token",
        r"(?-u:\b)dapi[a-f0-9]{32}(?:-[0-9])?",
        0,
    ),
    ("heroku_key", r"(?-u:\b)HRKU-[A-Za-z0-9_-]{30,}", 0),
    (
        "heroku_key",
        r"(?i:heroku)[A-Za-z0-9_ .:=\x22'-]{0,30}?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})",
        1,
    ),
    (
        "terraform_token",
        r"(?-u:\b)[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70}",
        0,
    ),
    (
        "kubernetes_bootstrap_token",
        r"(?i:bootstrap[_-]token)[\x22' :=]{1,4}([a-z0-9]{6}\.[a-z0-9]{16})",
        1,
    ),
    ("pulumi_token", r"(?-u:\b)pul-[a-f0-9]{40}", 0),
    (
        "planetscale_token",
        r"(?-u:\b)pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.=-]{32,64}",
        0,
    ),
    (
        "grafana_token",
        r"(?-u:\b)(?:glc_[A-Za-z0-9+/]{32,400}={0,2}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|eyJrIjoi[A-Za-z0-9]{60,100}={0,2})",
        0,
    ),
    (
        "flyio_token",
        r"(?-u:\b)(?:fo1_[A-Za-z0-9_-]{43}|fm[12][ar]?_[A-Za-z0-9+/]{100,}={0,3})",
        0,
    ),
    (
        "azure_storage_key",
        r"(?i:AccountKey|SharedAccessKey)=([A-Za-z0-9+/]{20,}={0,2})",
        1,
    ),
    (
        "azure_sas",
        r"[?&]sig=([A-Za-z0-9%+/]{30,}(?:=|%3[Dd]){0,2})",
        1,
    ),
    ("alibaba_key", r"(?-u:\b)LTAI[A-Za-z0-9]{20}", 0),
    // ---- collaboration and developer tools
    (
        "atlassian_token",
        r"(?-u:\b)(?:ATATT3|ATCTT3|ATBB)[A-Za-z0-9_=-]{24,}",
        0,
    ),
    (
        "dropbox_token",
        r"(?-u:\b)(?:sl\.(?:u\.)?[A-Za-z0-9_=-]{60,}|[a-z0-9]{11}AAAAAAAAAA[A-Za-z0-9_=-]{43})",
        0,
    ),
    (
        "linear_key",
        r"(?-u:\b)lin_(?:api|oauth)_[A-Za-z0-9]{40}",
        0,
    ),
    (
        "sourcegraph_token",
        r"(?-u:\b)sgp_(?:(?:[a-f0-9]{16}_|local_)?[a-f0-9]{40}|[A-Za-z0-9]{64})",
        0,
    ),
    ("figma_token", r"(?-u:\b)figd_[A-Za-z0-9_-]{40}", 0),
    ("postman_key", r"(?-u:\b)PMAK-[a-f0-9]{24}-[a-f0-9]{34}", 0),
    (
        "notion_token",
        r"(?-u:\b)(?:ntn_[0-9]{11}[A-Za-z0-9]{32,35}|secret_[A-Za-z0-9]{43})",
        0,
    ),
    (
        "sentry_token",
        r"(?-u:\b)(?:sntrys_eyJ[A-Za-z0-9+/=_-]{40,}|sntryu_[a-f0-9]{64})",
        0,
    ),
    (
        "newrelic_key",
        r"(?-u:\b)NR(?:AK|AA|II|JS)-[A-Za-z0-9]{27}",
        0,
    ),
    (
        "dynatrace_token",
        r"(?-u:\b)dt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64}",
        0,
    ),
    (
        "onepassword_token",
        r"(?-u:\b)ops_eyJ[A-Za-z0-9+/]{100,}={0,3}",
        0,
    ),
    ("adobe_secret", r"(?-u:\b)p8e-[A-Za-z0-9]{32}(?-u:\b)", 0),
    ("age_secret_key", r"AGE-SECRET-KEY-1[0-9A-Z]{58}", 0),
    // ---- web tokens and credentials in URLs and headers
    (
        // Signed (three parts) or unsigned (`alg: none`: header.payload. with no signature).
        "jwt",
        r"(?-u:\b)eyJ[A-Za-z0-9_-]{8,}\.(?:eyJ[A-Za-z0-9_-]{4,}\.(?:[A-Za-z0-9_-]+)?|[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})",
        0,
    ),
    (
        // `postgres://user:PASS@host`, `https://user:PASS@host`: the password. (No scheme in
        // the pattern: starting at `://` lets a literal search skip text without one.)
        "url_password",
        r"://[A-Za-z0-9._~%!$&'()*+,;=-]+:([^\s:/?#@\x22'`]+)@[A-Za-z0-9.\[\]-]",
        1,
    ),
    (
        "authorization_header",
        r"(?i:authorization)[\x22']?\s*[:=]\s*[\x22']?(?:[A-Za-z]+\s+)?([A-Za-z0-9._~+/=-]{16,}|[A-Za-z._~+/=-]*[0-9][A-Za-z0-9._~+/=-]{7,})",
        1,
    ),
    (
        // curl's `-u user:password` / `--user user:password`: the password.
        "curl_user",
        r"(?:^|\s)(?:-u|--user)[ =][\x22']?[^\s:\x22'@]+:[\x22']?([^\s\x22']+)",
        1,
    ),
    (
        "bearer_token",
        r"(?-u:\b)(?:Bearer|BEARER|bearer) ([A-Za-z0-9_~+/-]*[0-9][A-Za-z0-9._~+/-]{11,}=*)",
        1,
    ),
    // ---- PII
    (
        "email",
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        0,
    ),
    (
        // E.164 and international formats with spaces, dashes and brackets.
        "phone",
        r"\+[1-9][0-9 ()-]{7,16}[0-9]",
        0,
    ),
    (
        // North American numbers: (415) 555-0132, 415-555-0132, 415.555.0132, 1-415-555-0132.
        "phone",
        r"(?:(?-u:\b)1[-. ]?)?(?:\([2-9][0-9]{2}\) ?[2-9][0-9]{2}-[0-9]{4}|(?-u:\b)[2-9][0-9]{2}-[2-9][0-9]{2}-[0-9]{4}|(?-u:\b)[2-9][0-9]{2}\.[2-9][0-9]{2}\.[0-9]{4})(?-u:\b)",
        0,
    ),
];

/// Prefixes of the rules above: a token still being typed (at the end of the text) that starts
/// with one of these is left to its provider rule rather than claimed by the entropy
/// detector, so the redaction is named after the provider.
pub const PREFIXES: &[&str] = &[
    "AKIA",
    "ASIA",
    "A3T",
    "AGPA",
    "AIDA",
    "AROA",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "glrt-",
    "gldt-",
    "glft-",
    "glptt-",
    "GR1348941",
    "xox",
    "xapp-",
    "sk_",
    "rk_",
    "pk_",
    "whsec_",
    "sk-",
    "hf_",
    "api_org_",
    "AIza",
    "GOCSPX-",
    "ya29",
    "npm_",
    "pypi-",
    "rubygems_",
    "oy2",
    "CLOJARS_",
    "dckr_pat_",
    "AKCp",
    "cmVmdGtu",
    "SK",
    "AC",
    "SG",
    "key-",
    "pubkey-",
    "xkeysib-",
    "shp",
    "sq0",
    "EAA",
    "FLW",
    "EZAK",
    "ESAK",
    "do",
    "dp",
    "hvs",
    "hvb",
    "HRKU-",
    "pul-",
    "pscale_",
    "glc_",
    "glsa_",
    "eyJ",
    "fo1_",
    "fm1",
    "fm2",
    "LTAI",
    "ATATT3",
    "ATCTT3",
    "ATBB",
    "lin_",
    "figd_",
    "PMAK-",
    "ntn_",
    "secret_",
    "sntry",
    "NR",
    "dt0c01",
    "sgp_",
    "ops_",
    "p8e-",
    "AGE-",
    "sl.",
];
