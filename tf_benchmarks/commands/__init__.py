"""What both drivers share: the driver (command-line checks and a table of modes), the common
flags, the deploy modes (export, summary, report) and the base modes (train, eval). Gets the
methods passed in and imports none of them; may import every other package."""
