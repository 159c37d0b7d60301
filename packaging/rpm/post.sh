# %post of the coordmetrics RPM ($1: 1 on install, 2 or more on upgrade).
# Write access to node_exporter's textfile directory for the .prom file. A file system without
# ACLs must not fail the installation: the script explains, the exporter logs the failed write.
/usr/libexec/coordmetrics/textfile-access grant || :
# Neither the service nor the timer is enabled: the administrator chooses one of them.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
