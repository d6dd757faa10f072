"""The tool behind ``scripts/brokers``: real message brokers on loopback for local runs
and CI (see docs/brokers.md). Standard library only: CI runs it before the project's
packages are installed, with any Python 3.11+.

Modules: cli (verbs, names, the registry of brokers, parallel runs), base (the Broker
interface), common (settings, output, log hints, generated files, the lock), procs
(ports, pid files, waiting, stopping, running commands), apt (Debian packages), java
(Maven-fetched jars, Java command lines), and one module per broker: rabbit, mqtt, kafka.
"""
