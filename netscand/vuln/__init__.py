"""CVE data: NVD records and the Debian Security Tracker, imported into a SQLite file of their
own beside the scan store, and matched against what a scan found. A layer of its own: it knows
nothing of scans, so the matcher can be reasoned about, and tested, against the data alone."""
