"""Studies: random networks across ρ (sample, study) and ρ0 tuning (tune), run locally or on Ray."""
