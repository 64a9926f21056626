# The Fashion-MNIST-LT settings of the quick start and the budget study
# (sourced, not run). FASHION_LT_FLAGS: every training flag but the budget
# (--num_epoch, --num_batch) and the method's generations.
#
# Fashion-MNIST-LT (6000 ... 6000 * class_im_ratio training images per
# class), 10% labeled, the small network at width 1, cosine learning rate
# 0.1 to 0 in every generation, EMA decay 0.99 (the paper's 0.999 is too
# slow for a few hundred steps), batch 32 labeled + 2 x 64 unlabeled views,
# and --deterministic=True: two runs of the same command on the same machine
# kind give identical records (tests/test_determinism.py).
FASHION_LT_FLAGS=(--method=fixmatch --dataset=fashionmnistlt --net_arch=small
                  --net_width=1 --percent_labeled=0.1 --batch_size=32
                  --unlab_ratio=2 --sched_type=cos --learning_rate=0.1
                  --ema_decay=0.99 --eval_batch_size=1000 --progress=false
                  --deterministic=True)
