# %preun of the coordmetrics RPM ($1: 0 on erase, 1 or more on upgrade).
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl --no-reload disable --now coordmetrics.service coordmetrics-snapshot.timer >/dev/null 2>&1 || :
        systemctl stop coordmetrics-snapshot.service >/dev/null 2>&1 || :
    fi
    # The user coordmetrics stays; its write access to node_exporter's directory goes.
    /usr/libexec/coordmetrics/textfile-access revoke || :
fi
