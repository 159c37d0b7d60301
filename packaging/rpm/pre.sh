# %pre of the coordmetrics RPM ($1: 1 on install, 2 or more on upgrade).
# The static system user and group of the exporter, as sysusers.d/coordmetrics.conf declares
# them, before the units naming them are installed. They are never removed: files they own may
# remain (in /dev/shm, in the node_exporter directory) and a reused id would inherit them.
getent group coordmetrics >/dev/null || groupadd -r coordmetrics
getent passwd coordmetrics >/dev/null ||
    useradd -r -g coordmetrics -d /var/lib/coordmetrics -M -s /usr/sbin/nologin \
        -c "coordmetrics exporter" coordmetrics
exit 0
