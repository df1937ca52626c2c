//! Seeded, realistic sale-event generator with labeled anomalies, and Kafka publishing.
