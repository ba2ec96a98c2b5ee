"""The edge in front of the split services: the route table and the proxy configurations
rendered from it (nginx, Kong, the Kubernetes Ingress), and the split topology run locally."""
