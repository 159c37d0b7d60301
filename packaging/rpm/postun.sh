# %postun of the coordmetrics RPM ($1: 0 on erase, 1 or more on upgrade).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart coordmetrics.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ]; then
    # A stale .prom file would make node_exporter export the last values forever.
    rm -f /var/lib/prometheus/node-exporter/coordmetrics.prom
    # /var/lib/coordmetrics (metrics.json) stays, as RPM has no purge; so does the user.
fi
