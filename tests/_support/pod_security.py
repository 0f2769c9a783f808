"""The Pod Security Standards' *restricted* profile, as a check on a pod template.

Written from the published rules, https://kubernetes.io/docs/concepts/security/pod-security-standards/
(the page for Kubernetes v1.33, the release the manifests are validated against), and from
their implementation in Pod Security Admission, ``staging/src/k8s.io/pod-security-admission/policy/``
of kubernetes/kubernetes (``check_*.go``: one file per control; the restricted profile is every
baseline control plus the restricted ones). No validator that implements them installs with pip
here (the admission plugin is Go), hence this transcription; each rule names its control.

:func:`restricted_violations` returns one line per broken control, empty when the pod would be
admitted to a namespace labelled ``pod-security.kubernetes.io/enforce: restricted``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: Volume types the restricted profile allows (control "Volume Types").
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
#: Sysctls the baseline profile allows (control "Sysctls") in v1.33: the five of v1.0,
#: ip_local_reserved_ports since v1.27, the TCP keepalive and fin-timeout ones since v1.29.
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        yield from spec.get(kind) or []


def restricted_violations(template: dict[str, Any]) -> list[str]:
    """Why a pod template (``{metadata, spec}``) breaks the restricted profile; ``[]`` if it does not."""
    spec = template.get("spec") or {}
    pod_ctx = spec.get("securityContext") or {}
    problems: list[str] = []

    def ctx(container: dict[str, Any]) -> dict[str, Any]:
        return container.get("securityContext") or {}

    # -- baseline --------------------------------------------------------------------------
    for field in ("hostNetwork", "hostPID", "hostIPC"):  # Host Namespaces
        if spec.get(field):
            problems.append(f"Host Namespaces: spec.{field} must be false")
    if pod_ctx.get("windowsOptions", {}).get("hostProcess"):  # HostProcess
        problems.append("HostProcess: windowsOptions.hostProcess must not be true")
    for volume in spec.get("volumes") or []:  # HostPath Volumes, and restricted's Volume Types
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"Volume Types: volume {volume.get('name')!r} is {sorted(kinds)}")
    for sysctl in pod_ctx.get("sysctls") or []:  # Sysctls
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"Sysctls: {sysctl.get('name')} is not in the safe set")
    for where, sc in [("pod", pod_ctx)] + [(c.get("name"), ctx(c)) for c in containers(spec)]:
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            problems.append(f"SELinux: {where} sets custom seLinuxOptions")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":  # AppArmor
            problems.append(f"AppArmor: {where} is Unconfined")
    if pod_ctx.get("runAsUser") == 0:  # Running as Non-root user
        problems.append("Running as Non-root user: pod runAsUser is 0")
    pod_seccomp = (pod_ctx.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append(f"Seccomp: the pod's profile is {pod_seccomp}")
    if pod_ctx.get("runAsNonRoot") is False:
        problems.append("Running as Non-root: the pod sets runAsNonRoot false")

    for container in containers(spec):
        name, sc = container.get("name"), ctx(container)
        if sc.get("privileged"):  # Privileged Containers
            problems.append(f"Privileged Containers: {name} is privileged")
        for port in container.get("ports") or []:  # Host Ports
            if port.get("hostPort"):
                problems.append(f"Host Ports: {name} uses hostPort {port['hostPort']}")
        if sc.get("procMount", "Default") != "Default":  # /proc Mount Type
            problems.append(f"/proc Mount Type: {name} is {sc['procMount']}")
        # -- restricted ------------------------------------------------------------------
        if sc.get("allowPrivilegeEscalation") is not False:  # Privilege Escalation
            problems.append(f"Privilege Escalation: {name} must set allowPrivilegeEscalation false")
        non_root = sc.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))  # Running as Non-root
        if non_root is not True:
            problems.append(f"Running as Non-root: pod or {name} must set runAsNonRoot true")
        if sc.get("runAsUser") == 0:  # Running as Non-root user
            problems.append(f"Running as Non-root user: {name} runs as uid 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)  # Seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"Seccomp: pod or {name} must set seccompProfile RuntimeDefault or Localhost")
        capabilities = sc.get("capabilities") or {}  # Capabilities
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f'Capabilities: {name} must drop ["ALL"]')
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"Capabilities: {name} may add only NET_BIND_SERVICE")
    return problems
