package jobs

import (
	"context"
	"errors"
)

// runCreate runs a create job.
func runCreate(ctx context.Context, j *jobRun) error {
	return errors.New("create jobs are not implemented yet")
}
