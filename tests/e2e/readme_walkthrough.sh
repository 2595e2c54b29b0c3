# nnU-Net's folders, our trainers, small-machine settings
export nnUNet_raw=$PWD/nnUNet_raw nnUNet_preprocessed=$PWD/nnUNet_preprocessed nnUNet_results=$PWD/nnUNet_results
eval "$(nnspine trainers --export)"
export nnUNet_n_proc_DA=0 nnUNet_def_n_proc=1 nnUNet_compile=f

# data: a training subject and an unseen test subject, 5 contrasts each (or your own BIDS dataset)
nnspine phantom --kind cord -o train_bids --seed 0
nnspine phantom --kind cord -o test_bids --seed 1

# 1. soft ground truth + nnU-Net raw dataset (labelsTr, labelsTr_soft)
nnspine convert softgt -i train_bids --derivatives-out train_derivatives --nnunet-dataset 101 --name SoftCord

# 2. plan and preprocess: planning needs nnUNet_n_proc_DA >= 1; -gpu_memory_target 1 gives small CPU plans
nnUNet_n_proc_DA=1 nnUNetv2_plan_and_preprocess -d 101 -c 3d_fullres -np 1 -npfp 1 --verify_dataset_integrity -gpu_memory_target 1 -overwrite_plans_name nnUNetPlansCPU
nnspine preprocess-soft -d 101 -c 3d_fullres -p nnUNetPlansCPU

# 3. train on CPU (-device cpu); _debug trains 8 iterations, use nnUNetTrainerSoftSeg for a real model (GPU)
nnUNetv2_train 101 3d_fullres all -tr nnUNetTrainerSoftSeg_debug -p nnUNetPlansCPU -device cpu

# 4. predict the test subject with probabilities (nnU-Net input names end in _0000)
mkdir -p predict_in
cp test_bids/sub-01/anat/sub-01_T2w.nii.gz predict_in/sub-01_T2w_0000.nii.gz
cp test_bids/sub-01/anat/sub-01_T2starw.nii.gz predict_in/sub-01_T2starw_0000.nii.gz
nnUNetv2_predict -i predict_in -o pred -d 101 -c 3d_fullres -f all -tr nnUNetTrainerSoftSeg_debug -p nnUNetPlansCPU --save_probabilities -device cpu -npp 1 -nps 1

# 5. soft masks on the original grids, then CSA per slice (mm²)
nnspine softmask -i pred -o pred_soft --threshold 0.5
nnspine csa -i pred_soft/sub-01_T2w.nii.gz --perslice -o csa_perslice.csv
