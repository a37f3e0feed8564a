"""Things qbench downloads: the network settings every download obeys (offline, mirror), a stdlib resumable
downloader, and the named evaluation and calibration sets with the manifests shipped with qbench. Parent-side code:
nothing here imports torch."""
