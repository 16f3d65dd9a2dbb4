"""Protocol-level emulators of cloud messaging services, for tests and notebooks.

Neither Google Cloud Pub/Sub's nor Azure Event Hubs' emulator installs without Docker or
a cloud SDK, so these speak the services' wire protocols themselves: the official client
libraries talk to them unchanged. They keep everything in memory and are meant for one
process' tests or one person's exploration, not for load.
"""
