"""How a pod template gets its Redis URL: whole, from a Secret, never spliced or written out.

Security review, finding 16: ``REDIS_URL: "redis://:$(REDIS_PASSWORD)@redis..."`` spliced the
password into the URL with Kubernetes' ``$(VAR)`` expansion, which does no percent-encoding, so a
generated password holding ``@ / : # %`` moved the host. The manifests now take the whole
URL from a Secret (written with :func:`examples.fundamentals.securing_the_broker.tls.secret_url`)
and mount the CA its query names. :func:`redis_url_problems` lists what breaks that rule.
"""

from __future__ import annotations

import re

CA_DIRECTORY = "/etc/redis-ca"  # where secret_url's default ca_file lives
_URL = re.compile(r"rediss?://", re.IGNORECASE)


def redis_url_problems(template: dict) -> list[str]:
    """Each way a pod template (``metadata`` + ``spec``) could leak or mangle the password."""
    spec, problems = template["spec"], []
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for container in spec["containers"]:
        name, env = container["name"], {e["name"]: e for e in container.get("env", [])}
        url = env.get("REDIS_URL")
        if url is None:
            problems.append(f"{name}: no REDIS_URL")
        elif url.get("valueFrom", {}).get("secretKeyRef", {}).get("key") != "url":
            problems.append(f"{name}: REDIS_URL is not the whole URL from a Secret (key: url)")
        for variable in env.values():
            value = str(variable.get("value", ""))
            if "$(" in value or _URL.search(value) or "PASSWORD" in variable["name"]:
                problems.append(f"{name}: {variable['name']} splices or holds a credential")
        for word in container.get("command", []) + container.get("args", []):
            if _URL.search(word) or "$(" in word:
                problems.append(f"{name}: a URL or variable in the command line: {word!r}")
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        ca = mounts.get(CA_DIRECTORY)
        if ca is None or not ca.get("readOnly") or "configMap" not in volumes.get(ca["name"], {}):
            problems.append(f"{name}: the Redis CA is not mounted read-only at {CA_DIRECTORY}")
    return problems
