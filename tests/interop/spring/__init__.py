"""eventbinder and a real Spring Cloud Stream app (built with Maven) on the same brokers."""
